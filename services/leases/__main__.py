"""``python -m tendril.services.leases --config-json FILE``: the LeaseService process."""

from tendril.services.core.process import service_main
from tendril.services.leases.service import build

if __name__ == "__main__":
    service_main("leases", build)
