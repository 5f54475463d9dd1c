"""Error feedback: what the wire codec dropped from Δ is added to the next round's Δ.

The worker's bridge encodes the Δ file the trainer writes in the run's codec. With error
feedback on, the trainer sends Δ' = Δ + e (e: last round's residual) and keeps
e' = Δ' − decode(encode(Δ')) for the next round, in fp32, in memory (the trainer keeps no
other state across a restart either: a restarted worker starts again with e = 0).

The sparse codec (SparseLoCo, arXiv 2508.15706) keeps a decayed accumulator instead:
a = β·e + Δ, the trainer sends s = decode(encode(a)) (the chunk-wise top-k at 2 bits, already
sparse and quantized, which the bridge's encoder gives back unchanged) and keeps e' = a − s.
The decayed accumulator stands in for outer momentum (the run's outer_momentum is then 0).

decode(encode(·)) here is the codec's own arithmetic in torch, written so that it gives the
same bits as the registry's numpy codecs (``tendril.core.codecs``, which an executor cannot
import): float32 division by absmax / limit, half-to-even rounding, one float32 multiply on
decode (``tests/unit/test_feedback.py`` compares both bit for bit). The block size is the
one the bridge encodes with (:data:`BLOCK_SIZE`). The parameter server never sees e: it still
applies exactly the update it serves, so θ stays bit-identical on the server and every worker.
"""

from __future__ import annotations

import math

import torch

from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_diloco.params import Params

# NOTE: the block size a worker's bridge encodes pseudo-gradients with
# (tendril.core.codecs.DEFAULT_BLOCK_SIZE; a unit test keeps the two equal).
BLOCK_SIZE = 256
# NOTE: the sparse codec's chunk and kept values per chunk (tendril.core.codecs.SPARSE_CHUNK,
# SPARSE_TOP_K, SPARSE_UNUSED's meaning; a unit test keeps them equal).
SPARSE_CHUNK = 4096
SPARSE_TOP_K = 64
INT4 = "int4"  # codecs whose runs have error feedback unless the config turns it off
SPARSE = "sparse"
DEFAULT_BETA = 0.95  # the sparse accumulator's decay


def default_on(codec: str) -> bool:
    """Error feedback's default for a run of ``codec``: on for int4 and sparse, off otherwise."""
    return codec in (INT4, SPARSE)


def _sparse_roundtrip(values: torch.Tensor, chunk: int) -> torch.Tensor:
    """The sparse codec's decode(encode(values)): per chunk the 64 largest |x| (stable: ties to the
    lower index, zeros never), split by rank into a high and a low half, each at the magnitude
    of its middle element, signs kept; everything else 0."""
    flat = values.detach().to(torch.float32).reshape(-1)
    n = flat.numel()
    chunks = -(-n // chunk)
    if not chunks:
        return flat.clone().reshape(values.shape)
    padded = torch.zeros(chunks * chunk, dtype=torch.float32)
    padded[:n] = flat
    grid = padded.reshape(chunks, chunk)
    ordered, order = torch.sort(grid.abs(), dim=1, descending=True, stable=True)
    kept_mag, order = ordered[:, :SPARSE_TOP_K], order[:, :SPARSE_TOP_K]
    kept_val = grid.gather(1, order)
    m = (kept_mag > 0).sum(dim=1)
    high = (m + 1) // 2
    last = SPARSE_TOP_K - 1
    hi = kept_mag.gather(1, (high // 2).clamp(max=last)[:, None])
    lo = kept_mag.gather(1, (high + (m - high) // 2).clamp(max=last)[:, None])
    lo = torch.where((m > high)[:, None], lo, torch.zeros_like(lo))
    rank = torch.arange(SPARSE_TOP_K)[None, :]
    magnitude = torch.where(rank < high[:, None], hi, lo)
    signed = torch.where(kept_val < 0, -magnitude, magnitude)
    signed = torch.where(rank < m[:, None], signed, torch.zeros_like(signed))
    out = torch.zeros_like(grid).scatter_(1, order, signed)
    return out.reshape(-1)[:n].reshape(values.shape)


def _absmax_roundtrip(values: torch.Tensor, limit: int, block_size: int) -> torch.Tensor:
    flat = values.detach().to(torch.float32).reshape(-1)
    n = flat.numel()
    blocks = -(-n // block_size)
    padded = torch.zeros(blocks * block_size, dtype=torch.float32)
    padded[:n] = flat
    grid = padded.reshape(blocks, block_size)
    scales = grid.abs().amax(dim=1) / limit if blocks else torch.zeros(0, dtype=torch.float32)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    # Through int8 as the wire has it (a rounded -0.0 becomes 0).
    quant = torch.round(grid / safe[:, None]).clamp_(-limit, limit).to(torch.int8).to(torch.float32)
    return (quant * scales[:, None]).reshape(-1)[:n].reshape(values.shape)


def roundtrip(codec: str, values: torch.Tensor, block_size: int = 0) -> torch.Tensor:
    """decode(encode(values)) for the wire codec called ``codec`` (``block_size`` 0: the bridge's default)."""
    if codec == "fp32":
        return values.detach().to(torch.float32).clone()
    if codec == "bf16":
        return values.detach().to(torch.float32).to(torch.bfloat16).to(torch.float32)
    if codec == "int8":
        return _absmax_roundtrip(values, 127, block_size or BLOCK_SIZE)
    if codec == INT4:
        return _absmax_roundtrip(values, 7, block_size or BLOCK_SIZE)
    if codec == SPARSE:
        return _sparse_roundtrip(values, block_size or SPARSE_CHUNK)
    raise ExecutorError(
        f"job config: error_feedback has no arithmetic for codec {codec!r}; turn it off for this codec",
        reason=ExecutorReason.BAD_JOB_CONFIG,
    )


class ErrorFeedback:
    """The residual e of one worker (fp32, per parameter) and the two steps of each round."""

    def __init__(self, codec: str, *, beta: float = DEFAULT_BETA, block_size: int = 0) -> None:
        roundtrip(codec, torch.zeros(1))  # refuses a codec it cannot follow, at start
        self.codec = codec
        self.block_size = block_size  # the job's codec_block_size (0: the codec's default)
        self.sparse = codec == SPARSE
        self.beta = beta if self.sparse else 1.0
        self.residual: Params = {}
        self._accumulated: Params = {}  # sparse: a = β·e + Δ of the round being sent

    def compensate(self, delta: Params) -> Params:
        """What to send this round: Δ + e (sparse: decode(encode(β·e + Δ)))."""
        out = {}
        for name, value in delta.items():
            e = self.residual.get(name)
            out[name] = value if e is None else (e * self.beta if self.sparse else e) + value
        if not self.sparse:
            return out
        self._accumulated = out
        return {name: roundtrip(self.codec, value, self.block_size) for name, value in out.items()}

    def sent(self, delta: Params) -> None:
        """Keep e = what was meant − what the wire carried of it (``delta``: what was sent)."""
        if self.sparse:
            self.residual = {name: self._accumulated[name] - value for name, value in delta.items()}
            self._accumulated = {}
            return
        self.residual = {name: value - roundtrip(self.codec, value, self.block_size) for name, value in delta.items()}

    def norm(self) -> float:
        """‖e‖₂ (for the round's metrics)."""
        return math.sqrt(sum(float((v.double() ** 2).sum()) for v in self.residual.values()))
