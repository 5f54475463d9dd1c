"""Package layout: generated stubs, services and executors form one `tendril` import tree.

clients/python/tendril  -> tendril            (generated gRPC stubs: tendril.<area>.v1)
services                -> tendril.services   (the worker's services and the common core)
executors               -> tendril.executors  (executor programs started by JobService)
"""

from setuptools import find_packages, setup

ROOTS = {
    "tendril": "clients/python/tendril",
    "tendril.services": "services",
    "tendril.executors": "executors",
}


def _packages() -> list[str]:
    found: list[str] = []
    for name, folder in ROOTS.items():
        found.append(name)
        found.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return found


setup(packages=_packages(), package_dir=ROOTS, package_data={"": ["*.pyi", "py.typed", "*.binpb"]})
