"""Error feedback: what the wire codec dropped from Δ is added to the next round's Δ.

The worker's bridge encodes the Δ file the trainer writes in the run's codec. With error
feedback on, the trainer sends Δ' = Δ + e (e: last round's residual) and keeps
e' = Δ' − decode(encode(Δ')) for the next round, in fp32, in memory (the trainer keeps no
other state across a restart either: a restarted worker starts again with e = 0).

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
INT4 = "int4"  # the codec whose runs have error feedback unless the config turns it off


def default_on(codec: str) -> bool:
    """Error feedback's default for a run of ``codec``: on for int4, off otherwise."""
    return codec == INT4


def _absmax_roundtrip(values: torch.Tensor, limit: int) -> torch.Tensor:
    flat = values.detach().to(torch.float32).reshape(-1)
    n = flat.numel()
    blocks = -(-n // BLOCK_SIZE)
    padded = torch.zeros(blocks * BLOCK_SIZE, dtype=torch.float32)
    padded[:n] = flat
    grid = padded.reshape(blocks, BLOCK_SIZE)
    scales = grid.abs().amax(dim=1) / limit if blocks else torch.zeros(0, dtype=torch.float32)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    # Through int8 as the wire has it (a rounded -0.0 becomes 0).
    quant = torch.round(grid / safe[:, None]).clamp_(-limit, limit).to(torch.int8).to(torch.float32)
    return (quant * scales[:, None]).reshape(-1)[:n].reshape(values.shape)


def roundtrip(codec: str, values: torch.Tensor) -> torch.Tensor:
    """decode(encode(values)) for the wire codec called ``codec``."""
    if codec == "fp32":
        return values.detach().to(torch.float32).clone()
    if codec == "bf16":
        return values.detach().to(torch.float32).to(torch.bfloat16).to(torch.float32)
    if codec == "int8":
        return _absmax_roundtrip(values, 127)
    if codec == INT4:
        return _absmax_roundtrip(values, 7)
    raise ExecutorError(
        f"job config: error_feedback has no arithmetic for codec {codec!r}; turn it off for this codec",
        reason=ExecutorReason.BAD_JOB_CONFIG,
    )


class ErrorFeedback:
    """The residual e of one worker (fp32, per parameter) and the two steps of each round."""

    def __init__(self, codec: str) -> None:
        roundtrip(codec, torch.zeros(1))  # refuses a codec it cannot follow, at start
        self.codec = codec
        self.residual: Params = {}

    def compensate(self, delta: Params) -> Params:
        """Δ' = Δ + e: what to send this round."""
        return {name: value + self.residual[name] if name in self.residual else value for name, value in delta.items()}

    def sent(self, delta: Params) -> None:
        """Keep e = Δ' − decode(encode(Δ')) of what was sent, for the next round."""
        self.residual = {name: value - roundtrip(self.codec, value) for name, value in delta.items()}

    def norm(self) -> float:
        """‖e‖₂ (for the round's metrics)."""
        return math.sqrt(sum(float((v.double() ** 2).sum()) for v in self.residual.values()))
