"""The C extension of tendril-kernels (the rest of the metadata is in pyproject.toml)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tendril_kernels._outer",
            sources=["tendril_kernels/_outer.c"],
            # NOTE: -ffp-contract=off: the compiler must not fuse a*b + c where torch rounds twice
            # (buf·μ + g); the fused steps are explicit fmaf() calls. No -ffast-math: it would
            # flush subnormals and reorder, and torch does neither.
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c11"],
        )
    ]
)
