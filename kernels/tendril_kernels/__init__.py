"""The parameter server's float32 arithmetic in C: one pass per element, the GIL released.

- :func:`nesterov` — torch.optim.SGD(nesterov=True)'s outer step on a block of the
  accumulator, bit for bit (the fused multiply-adds torch's AVX2 kernels make, as ``fmaf``);
  the accumulator becomes the momentum buffer, the update u = float32(θ_torch − θ) is written.
- :func:`fold` — acc += float32(w · Δ) (two roundings, as numpy's multiply then add).
- :data:`VARIANT` — which loops the CPU runs: ``"avx2+fma"`` (vectorized, hardware FMA) or
  ``"baseline"`` (libm's ``fmaf``: the same bits, slower).

``tendril.paramserver.outer`` keeps the numpy reference they are tested against, bit for bit.
"""

from tendril_kernels._outer import VARIANT, fold, nesterov

__all__ = ["VARIANT", "fold", "nesterov"]
