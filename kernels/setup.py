"""The C extension of tendril-kernels (the rest of the metadata is in pyproject.toml)."""

from setuptools import Extension, setup

# NOTE: -ffp-contract=off: the compiler must not fuse a*b + c where torch and numpy round twice
# (buf·μ + g, w·Δ + acc); the fused steps are explicit fmaf() calls. No -ffast-math: it would
# flush subnormals and reorder, and torch and numpy do neither.
FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c11"]

setup(
    ext_modules=[
        Extension("tendril_kernels._outer", sources=["tendril_kernels/_outer.c"], extra_compile_args=FLAGS),
        Extension("tendril_kernels._codecs", sources=["tendril_kernels/_codecs.c"], extra_compile_args=FLAGS),
    ]
)
