"""The parameter server's float32 arithmetic in C: one pass per element, the GIL released.

- :func:`nesterov` — torch.optim.SGD(nesterov=True)'s outer step on a block of the
  accumulator, bit for bit (the fused multiply-adds torch's AVX2 kernels make, as ``fmaf``);
  the accumulator becomes the momentum buffer, the update u = float32(θ_torch − θ) is written.
- :func:`fold` — acc += float32(w · Δ) (two roundings, as numpy's multiply then add).
- :data:`VARIANT` — which loops the CPU runs: ``"avx2+fma"`` (vectorized, hardware FMA) or
  ``"baseline"`` (libm's ``fmaf``: the same bits, slower).
- the payload codecs' loops (``_codecs.c``): :func:`bf16_encode`, :func:`bf16_decode`,
  :func:`absmax_quantize` (int8/int4 blocks), :func:`blockwise_decode`, :func:`pack_int4`,
  :func:`unpack_int4`, :func:`sparse_encode` (chunk-wise top-k), each writing into buffers the
  caller gives, and :func:`all_finite`.

``tendril.paramserver.outer`` and ``tendril.core.codecs`` keep the numpy references they are
tested against, bit for bit.
"""

from tendril_kernels._codecs import (
    absmax_quantize,
    all_finite,
    bf16_decode,
    bf16_encode,
    blockwise_decode,
    pack_int4,
    sparse_encode,
    unpack_int4,
)
from tendril_kernels._outer import VARIANT, fold, nesterov

__all__ = [
    "VARIANT",
    "absmax_quantize",
    "all_finite",
    "bf16_decode",
    "bf16_encode",
    "blockwise_decode",
    "fold",
    "nesterov",
    "pack_int4",
    "sparse_encode",
    "unpack_int4",
]
