"""The outer optimizer: Nesterov SGD exactly as ``torch.optim.SGD(nesterov=True)`` steps.

With grad = g (the weighted mean pseudo-gradient, Δ = θ_start − θ_local), torch does::

    buf = g                      (first step: a copy of the gradient)
    buf = buf * μ + g            (later steps: two roundings, mul_ then add_)
    d   = g + μ · buf            (grad.add(buf, alpha=μ): one fused multiply-add)
    θ   = θ + (−lr) · d          (param.add_(d, alpha=−lr): one fused multiply-add)

torch's CPU kernels compute ``a + alpha * b`` as a fused multiply-add (one rounding), with
alpha cast to float32. :func:`fma32` reproduces that bit for bit with numpy: the product of
two float32 is exact in float64, the float64 sum is made round-to-odd (from its exact error,
TwoSum), and rounding a round-to-odd float64 to float32 equals rounding the exact value once
(53 ≥ 2·24 + 2).

# NOTE: workers apply the served update as θ + u (one float32 add). Where θ is small next to
# its step, θ + (θ_torch − θ) is not θ_torch again (the difference is rounded), so a server
# keeping θ_torch would drift an ulp away from every worker in those elements. The server
# therefore keeps θ_new = θ + u with u = float32(θ_torch − θ): the momentum buffer and u are
# torch's exactly, θ_new is what every worker holds, bit for bit, and differs from θ_torch by
# one rounding (an ulp of max(|θ|, |θ_torch|)) in the few elements where the difference rounds.
# With a lossy codec (bf16, int8, int4) the workers get û = decode(encode(u)), and the server keeps
# θ + û (see aggregate.write_checkpoint). The error u − û is dropped, not fed back: feeding it
# into the next round needs a third model-sized buffer in memory and in every checkpoint (over
# the 2 × model a round may write), and the momentum buffer keeps torch's exact history of g,
# so the error of a round does not compound in the optimizer state; it is at most half a step
# of the codec per value (int8, int4: scale/2 of its block, bf16: 2^-9 relative), unbiased rounding.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import numpy.typing as npt

from tendril.core.kernels import KERNELS

F32 = npt.NDArray[np.float32]

# NOTE: the same steps in C (tendril-kernels, ``kernels/`` in the repository): one pass per value
# with the fused multiply-adds done by the CPU (fmaf), where the numpy reference below needs about
# 20 passes over float64 temporaries. Measured on a 2-core machine, 100M values: 0.054 s against
# 0.35 s single-threaded. Tests hold the two to the same bits.


class Scratch:
    """Buffers an outer step reuses from block to block: no allocation, no page fault per block."""

    def __init__(self, size: int) -> None:
        self.wide = np.empty(size, dtype=np.float64)
        self.bits = np.empty(size, dtype=np.int64)
        self.suspect = np.empty(size, dtype=np.bool_)
        self.subnormal = np.empty(size, dtype=np.bool_)
        self.buf = np.empty(size, dtype=np.float32)
        self.direction = np.empty(size, dtype=np.float32)
        self.theta = np.empty(size, dtype=np.float32)
        self.update = np.empty(size, dtype=np.float32)
        self.grad = np.empty(size, dtype=np.float32)


def fma32(a: F32, b: float | np.float32, c: F32, *, out: F32 | None = None, scratch: Scratch | None = None) -> F32:
    """float32(a·b + c) with a single rounding, for float32 arrays a, c and a float32 scalar b.

    ``out`` receives the result; ``scratch`` lends the temporaries (both for blocks of at most
    its size).
    """
    n = a.size
    scale = np.float64(np.float32(b))
    total = scratch.wide[:n] if scratch is not None else np.empty(n, dtype=np.float64)
    np.multiply(a, scale, out=total, dtype=np.float64)  # exact: 24 + 24 bits < 53
    np.add(total, c, out=total)
    # Rounding the float64 sum to float32 can only go wrong when the sum landed exactly on a
    # float32 midpoint (low 29 mantissa bits = 1000...0) or in float32's subnormal range
    # (exponent below float32's smallest normal); only those elements get the exact treatment.
    bits = total.view(np.int64)
    field = scratch.bits[:n] if scratch is not None else np.empty(n, dtype=np.int64)
    suspect = scratch.suspect[:n] if scratch is not None else np.empty(n, dtype=np.bool_)
    subnormal = scratch.subnormal[:n] if scratch is not None else np.empty(n, dtype=np.bool_)
    np.bitwise_and(bits, _LOW29, out=field)
    np.equal(field, _HALF29, out=suspect)
    np.bitwise_and(bits, _EXPONENT, out=field)
    np.less(field, _F32_NORMAL_EXPONENT, out=subnormal)
    np.logical_or(suspect, subnormal, out=suspect)
    index = np.flatnonzero(suspect)
    if index.size:
        product = a[index].astype(np.float64) * scale
        total[index] = _round_to_odd(product, c[index].astype(np.float64), total[index])
    result = out if out is not None else np.empty(n, dtype=np.float32)
    np.copyto(result, total, casting="same_kind")  # float64 -> float32, to nearest
    return result


_LOW29 = np.int64((1 << 29) - 1)
_HALF29 = np.int64(1 << 28)
_EXPONENT = np.int64(0x7FF << 52)
# The float64 exponent field of float32's smallest normal, 2^-126: below it |x| < 2^-126.
_F32_NORMAL_EXPONENT = np.int64((1023 - 126) << 52)


def _round_to_odd(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], s: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``s`` = fl64(x + y) made round-to-odd, from the exact error of the sum (TwoSum)."""
    virtual = s - x
    err = (x - (s - virtual)) + (y - virtual)
    bits = s.view(np.int64)
    inexact_even = (err != 0) & ((bits & 1) == 0) & np.isfinite(s)
    # Move an inexact, even result one ulp toward the exact value.
    toward = np.where((err > 0) == (s > 0), 1, -1).astype(np.int64)
    return (bits + np.where(inexact_even, toward, 0)).view(np.float64)


def nesterov_step(
    theta: F32, momentum: F32 | None, grad: F32, *, lr: float, mu: float, scratch: Scratch | None = None
) -> tuple[F32, F32]:
    """One outer step on a piece: returns (new momentum buffer, u) with u = float32(θ_torch − θ).

    ``momentum`` None means the first step (the buffer starts as a copy of ``grad``). With
    ``scratch`` the results are views of its buffers, valid until its next use.
    """
    n = grad.size
    grad = np.asarray(grad, dtype=np.float32)
    buf = scratch.buf[:n] if scratch is not None else np.empty(n, dtype=np.float32)
    # torch: buf = clone(grad) on the first step, else buf.mul_(μ).add_(grad) (two roundings).
    if momentum is None:
        np.copyto(buf, grad)
    else:
        np.multiply(momentum, np.float32(mu), out=buf)
        np.add(buf, grad, out=buf)
    direction = fma32(buf, mu, grad, out=scratch.direction[:n] if scratch is not None else None, scratch=scratch)
    theta_torch = fma32(
        direction, -np.float32(lr), theta, out=scratch.theta[:n] if scratch is not None else None, scratch=scratch
    )
    update = np.subtract(theta_torch, theta, out=scratch.update[:n] if scratch is not None else None)
    return buf, update


def step_in_place(
    theta: F32,
    momentum: F32 | None,
    acc: F32,
    update: F32,
    *,
    weight: np.float32,
    lr: float,
    mu: float,
    scratch: Scratch | None = None,
    kernels: ModuleType | None = KERNELS,
) -> None:
    """The outer step on a block of the accumulator: g = acc / weight, then :func:`nesterov_step`;
    ``acc`` becomes the new momentum buffer, ``update`` receives u. ``kernels`` None: the numpy
    reference (``scratch`` lends it buffers)."""
    if kernels is not None:
        kernels.nesterov(theta, momentum, acc, update, float(weight), lr, mu)
        return
    n = acc.size
    grad = np.divide(acc, weight, out=scratch.grad[:n] if scratch is not None else None)
    buf, u = nesterov_step(theta, momentum, grad, lr=lr, mu=mu, scratch=scratch)
    np.copyto(update, u)
    np.copyto(acc, buf)


def nesterov(theta: F32, momentum: F32 | None, grad: F32, *, lr: float, mu: float) -> tuple[F32, F32, F32]:
    """One outer step on a piece: returns (θ_new, new momentum buffer, u), θ_new = θ + u.

    ``momentum`` None means the first step (the buffer starts as a copy of ``grad``).
    """
    buf, update = nesterov_step(theta, momentum, grad, lr=lr, mu=mu)
    return (theta + update).astype(np.float32), buf, update
