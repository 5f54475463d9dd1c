"""Training batches read from the data slices the bridge hands out, one slice after another.

A batch is a dict of the slice's named tensors (``input_ids``, ``labels``, ``pixel_values``,
…), ``batch_size`` examples of each. A slice that cannot be read, or lacks a tensor the task
needs, is skipped and reported (``on_skip``) rather than ending the job: one damaged file on a
data node must not stop a run. Only when MAX_SKIPS_IN_A_ROW slices in a row fail does the job
end, since then nothing can be trained at all.

The next slice is asked for as soon as one is read (``read_ahead``), so that the call to the
bridge (and on to the DataFetcher) travels while the slice's batches train.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import torch

from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_models import ModelError, Task
from tendril_models import batches as model_batches

Batch = dict[str, torch.Tensor]
MAX_SKIPS_IN_A_ROW = 8


def load_slice(path: Path, task: Task, max_seq_len: int | None = None) -> Batch:
    """Every tensor of a slice file, checked against the task and the model's context."""
    try:
        tensors = model_batches.load_slice(path)
    except ModelError as exc:
        raise ExecutorError(exc.message, reason=ExecutorReason.BAD_SLICE) from exc
    missing = [name for name in task.inputs if name not in tensors]
    if missing:
        raise ExecutorError(
            f"slice {path.name} lacks the tensors {missing} that task {task.name} needs (it has {sorted(tensors)})",
            reason=ExecutorReason.BAD_SLICE,
        )
    ids = tensors.get("input_ids")
    if ids is not None and ids.dim() != 2:
        raise ExecutorError(
            f"slice {path.name} needs a 2-D input_ids [examples, tokens], has {tuple(ids.shape)}",
            reason=ExecutorReason.BAD_SLICE,
        )
    if ids is not None and max_seq_len is not None and ids.shape[1] > max_seq_len:
        raise ExecutorError(
            f"slice {path.name} has sequences of {ids.shape[1]} tokens, the model takes at most {max_seq_len} "
            "(give the model a longer context, or prepare the data with a shorter --seq-len)",
            reason=ExecutorReason.SEQ_TOO_LONG,
        )
    return tensors


class Batches:
    """Cuts consecutive batches of ``batch_size`` examples; a slice's remainder is a smaller batch."""

    def __init__(
        self,
        next_slice: Callable[[], Awaitable[Path]],
        batch_size: int,
        load: Callable[[Path], Batch],
        *,
        on_skip: Callable[[Path, ExecutorError], None] | None = None,
        max_skips_in_a_row: int = MAX_SKIPS_IN_A_ROW,
        on_wait: Callable[[float], None] | None = None,
        read_ahead: bool = True,
    ) -> None:
        """``on_wait``: told the seconds each batch waited for its slice (not the time a slice
        asked for ahead took to arrive meanwhile)."""
        self._next_slice = next_slice
        self._batch_size = batch_size
        self._load = load
        self._on_skip = on_skip
        self._on_wait = on_wait
        self._max_skips = max_skips_in_a_row
        self._read_ahead = read_ahead
        self._ahead: asyncio.Task[Path] | None = None
        self._tensors: Batch | None = None
        self._rows = 0
        self._pos = 0

    # NOTE: one slice ahead of the one training, beside the DataFetcher's own prefetch: that
    # keeps slices on the worker's disk, while each NextSlice still crosses two processes (the
    # job's bridge, the DataFetcher), a few ms on a busy host, five times a round with slices of
    # two batches; asked for ahead, that call travels while the batches before it train.
    async def _take(self) -> Path:
        began = time.perf_counter()
        task, self._ahead = self._ahead, None
        try:
            return await (task if task is not None else self._next_slice())
        finally:
            if self._on_wait is not None:
                self._on_wait(time.perf_counter() - began)

    def _ask_ahead(self) -> None:
        if self._read_ahead and self._ahead is None:
            self._ahead = asyncio.ensure_future(self._next_slice())

    def close(self) -> None:
        """Drop the slice asked for ahead (its call is cancelled; what it raised is not raised)."""
        task, self._ahead = self._ahead, None
        if task is None:
            return
        if task.done():
            with contextlib.suppress(BaseException):
                task.result()
        else:
            task.cancel()

    async def _read_next(self) -> None:
        errors: list[str] = []
        while True:
            path = await self._take()
            try:
                self._tensors = self._load(path)
            except ExecutorError as exc:
                if self._on_skip is not None:
                    self._on_skip(path, exc)
                errors.append(exc.message)
                if len(errors) >= self._max_skips:
                    raise ExecutorError(
                        f"{len(errors)} slices in a row could not be read, the last: {errors[-1]}",
                        reason=ExecutorReason.NO_READABLE_SLICE,
                    ) from exc
                continue
            self._rows = int(next(iter(self._tensors.values())).shape[0])
            self._pos = 0
            self._ask_ahead()
            return

    async def next(self) -> Batch:
        if self._tensors is None or self._pos >= self._rows:
            await self._read_next()
        assert self._tensors is not None
        batch = {name: t[self._pos : self._pos + self._batch_size] for name, t in self._tensors.items()}
        self._pos += self._batch_size
        return batch
