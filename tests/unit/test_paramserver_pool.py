"""The memory budget's pool of buffers: reused within the limit, never leaking a previous use's bytes."""

from __future__ import annotations

import gc
import mmap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tendril.core import tensorfile
from tendril.core.tensorstream import prepared_payload
from tendril.paramserver.aggregate import Accumulator, payload_layout
from tendril.paramserver.core import ParameterServerCore
from tendril.paramserver.memory import MemoryBudget
from tests.unit.test_aggregator_core import _open, _push, _update, _write

SIZE = 64 * mmap.PAGESIZE


def _address(buffer: np.ndarray) -> int:
    return int(buffer.__array_interface__["data"][0])


def test_a_released_buffer_is_reused_and_counted_as_pooled() -> None:
    budget = MemoryBudget(4 * SIZE)
    first = budget.allocate(SIZE)
    address = _address(first)
    first[:] = 7
    del first
    gc.collect()
    assert budget.held == 0 and budget.pooled == SIZE
    again = budget.allocate(SIZE - 100)  # about the same size: served from the pool
    assert _address(again) == address and len(again) == SIZE - 100
    assert budget.held == SIZE - 100 and budget.pooled == 0
    assert (again == 7).all()  # the bytes of its last use: callers write before they read
    del again
    gc.collect()
    zeroed = budget.allocate(SIZE, zeroed=True)
    assert _address(zeroed) == address and not zeroed.any()


def test_the_pool_keeps_held_and_pooled_bytes_within_the_limit() -> None:
    budget = MemoryBudget(2 * SIZE)
    a, b, c = budget.allocate(SIZE), budget.allocate(SIZE), budget.allocate(SIZE)  # over the limit: allowed
    del a, b, c
    gc.collect()
    assert budget.held == 0 and budget.pooled == 2 * SIZE  # the third was unmapped
    big = budget.allocate(3 * SIZE)  # no pooled mapping fits: the pool is emptied for a fresh one
    assert budget.pooled == 0 and budget.held == 3 * SIZE
    del big
    gc.collect()
    assert budget.pooled == 0  # 3 × SIZE does not fit the limit: unmapped, not pooled
    unlimited = MemoryBudget()
    buffer = unlimited.allocate(SIZE)
    del buffer
    gc.collect()
    assert unlimited.pooled == 0  # no limit: nothing is kept


def test_a_buffer_still_viewed_is_not_reused() -> None:
    budget = MemoryBudget(4 * SIZE)
    buffer = budget.allocate(SIZE)
    view = memoryview(buffer)[10:20]  # a reader (a pull) still holds part of it
    address = _address(buffer)
    del buffer
    gc.collect()
    assert budget.held == SIZE and budget.pooled == 0
    other = budget.allocate(SIZE)
    assert _address(other) != address
    del view
    gc.collect()
    assert budget.pooled == SIZE


def test_pages_go_back_only_through_release_pages() -> None:
    budget = MemoryBudget(4 * SIZE)
    buffer = budget.allocate(SIZE)
    buffer[:] = 1
    budget.release_pages(memoryview(buffer), 100, 3 * mmap.PAGESIZE + 5)  # whole pages inside the range only
    assert (buffer[: mmap.PAGESIZE] == 1).all()
    assert not buffer[mmap.PAGESIZE : 3 * mmap.PAGESIZE].any()
    assert (buffer[3 * mmap.PAGESIZE :] == 1).all()
    assert not budget.over
    extra = budget.allocate(4 * SIZE)
    assert budget.over  # held beyond the limit (pushes admitted while another is folded)
    del extra


@pytest.mark.parametrize("codec", ["fp32", "int8", "sparse"])
def test_an_accumulator_over_a_used_buffer_sums_as_over_zeros(tmp_path: Path, codec: str) -> None:
    shapes = [("a", (3000,)), ("b", (70_001,))]
    theta, _ = tensorfile.plan_layout(shapes, "fp32")
    payloads = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        values = {name: (rng.standard_normal(shape) * 1e-2).astype(np.float32) for name, shape in shapes}
        values["a"][:5] = -0.0  # the sign of zero survives as on a zero buffer (0 + -0 = +0)
        save_file(values, str(tmp_path / f"d{seed}.st"))
        with prepared_payload(tmp_path / f"d{seed}.st", codec) as payload:
            view = memoryview(payload.path.read_bytes())
        payloads.append((view, payload_layout(view)))
    fresh = Accumulator(theta, memoryview(bytearray(4 * theta.numel)))
    garbage = bytearray(b"\xff\x7f\xc0\x01" * theta.numel)  # NaNs and junk from a previous use
    used = Accumulator(theta, memoryview(garbage))
    for acc in (fresh, used):
        for i, (view, layout) in enumerate(payloads):
            acc.fold(f"w{i}", 1.5 + i, view.toreadonly(), layout)
    assert fresh.values.tobytes() == used.values.tobytes()


async def test_rounds_on_reused_buffers_give_the_same_bits_as_fresh_ones(tmp_path: Path) -> None:
    deltas = [_write(tmp_path / f"d{i}.st", i + 1, 1e-2) for i in range(2)]
    updates = {}
    for name, fill in (("reused", True), ("fresh", False)):
        core = ParameterServerCore(tmp_path / name)
        await _open(core, tmp_path, "run", expected_workers=2, quorum=2, round_timeout_seconds=0)
        if fill:
            # A pool full of junk: every buffer of the round comes from it (the budget has room).
            theta = core.runs["run"].theta_layout
            assert theta is not None
            junk = [core.budget.allocate(n) for n in (4 * theta.numel, theta.total_bytes, theta.total_bytes)]
            for buffer in junk:
                buffer[:] = 0xFF
            del junk, buffer
            gc.collect()
            assert core.budget.pooled > 0
        else:
            core.budget.limit = 0  # nothing pooled: fresh mappings
        got = []
        for round in range(2):
            for i, delta in enumerate(deltas):
                await _push(core, delta, run="run", round=round, worker=f"w{i}", weight=1 + i)
            got.append(await _update(core, "run", round))
            for i in range(len(deltas)):  # every contributor asks for it, as bridges do (naming themselves)
                await core.update_payload("run", round, "", timeout=10.0, worker_id=f"w{i}")
        updates[name] = got
        if fill:
            assert core.budget.pooled > 0  # the round's buffers went back to the pool
        await core.stop()
    assert updates["reused"] == updates["fresh"]
