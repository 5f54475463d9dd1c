"""Streaming sync at the scheduler: a run's fragments are runs of their own at the parameter
server (``<run_id>-f<k>``); θ is every fragment's tensors merged by name.

The executor splits θ (``tendril_diloco.fragments``); the scheduler only needs the runs' names
and the merge, which works for any split whose fragments are disjoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import numpy as np
from safetensors.numpy import load_file, save_file

from tendril.core.errors import ErrorKind
from tendril.core.tensorstream import TensorStreamError, TensorStreamReason, pull_parameters


def run_ids(run_id: str, fragments: int) -> list[str]:
    """The parameter server's runs of a run: itself, or (``fragments`` ≥ 1) one per fragment."""
    if fragments <= 0:
        return [run_id]
    return [f"{run_id}-f{k}" for k in range(fragments)]


def merge_files(parts: list[Path], dest: Path) -> None:
    """The fragments' SafeTensors files as one (written atomically); a tensor in two is refused."""
    merged: dict[str, np.ndarray] = {}
    for part in parts:
        tensors = load_file(str(part))
        twice = sorted(set(merged) & set(tensors))
        if twice:
            raise TensorStreamError(
                ErrorKind.DATA_LOSS,
                f"the fragments' θ name {twice[:3]} more than once",
                reason=TensorStreamReason.BAD_FILE,
            )
        merged.update(tensors)
    tmp = dest.with_name(f".{dest.name}.merging")
    save_file(merged, str(tmp))
    os.replace(tmp, dest)


async def pull_theta(channel: grpc.aio.Channel, *, run_id: str, fragments: int, dest: Path) -> int:
    """Pull the run's θ to ``dest``: with fragments, every fragment's run merged by name. Returns
    the round θ starts (with fragments, the lowest of theirs: every fragment is at least there)."""
    if fragments <= 0:
        return await pull_parameters(channel, run_id=run_id, dest=dest)
    parts = [dest.with_name(f".{dest.name}.f{k}") for k in range(fragments)]
    try:
        rounds = [
            await pull_parameters(channel, run_id=fragment_run, dest=part)
            for fragment_run, part in zip(run_ids(run_id, fragments), parts, strict=True)
        ]
        merge_files(parts, dest)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    return min(rounds)
