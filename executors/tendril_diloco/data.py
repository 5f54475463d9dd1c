"""Training batches read from the data slices the bridge hands out, one slice after another."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from tendril_diloco.errors import ExecutorError, ExecutorReason


def load_slice(path: Path, max_seq_len: int) -> torch.Tensor:
    """``input_ids [N, seq_len]`` of a slice file as int64."""
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ExecutorError(f"slice {path.name} is not readable: {exc}", reason=ExecutorReason.BAD_SLICE) from exc
    ids = tensors.get("input_ids")
    if ids is None or ids.dim() != 2 or ids.shape[0] == 0:
        shape = None if ids is None else tuple(ids.shape)
        raise ExecutorError(
            f"slice {path.name} needs a non-empty 2-D tensor input_ids, has {shape}",
            reason=ExecutorReason.BAD_SLICE,
        )
    if ids.shape[1] > max_seq_len:
        raise ExecutorError(
            f"slice {path.name} has sequences of {ids.shape[1]} tokens, the model takes at most {max_seq_len} "
            "(set model.n_positions to the data set's seq_len)",
            reason=ExecutorReason.SEQ_TOO_LONG,
        )
    return ids.to(torch.int64)


class Batches:
    """Cuts consecutive batches of ``batch_size`` sequences; a slice's remainder is a smaller batch."""

    def __init__(self, next_slice: Callable[[], Awaitable[Path]], batch_size: int, max_seq_len: int) -> None:
        self._next_slice = next_slice
        self._batch_size = batch_size
        self._max_seq_len = max_seq_len
        self._ids: torch.Tensor | None = None
        self._pos = 0

    async def next(self) -> torch.Tensor:
        if self._ids is None or self._pos >= self._ids.shape[0]:
            self._ids = load_slice(await self._next_slice(), self._max_seq_len)
            self._pos = 0
        batch = self._ids[self._pos : self._pos + self._batch_size]
        self._pos += batch.shape[0]
        return batch
