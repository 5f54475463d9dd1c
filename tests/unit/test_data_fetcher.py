"""The DataFetcher core with in-memory upstreams: prefetch depth, verification, resume, sharing."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path

import pytest

from tendril.core.errors import ErrorKind
from tendril.data_fetcher.cache import SliceCache
from tendril.data_fetcher.errors import FetcherError, FetcherReason
from tendril.data_fetcher.fetcher import DataFetcher
from tendril.data_fetcher.model import Assignment, Chunk, FetchPolicy

CHUNK = 100
FAST = FetchPolicy(attempts=3, backoff_seconds=0.001, backoff_max_seconds=0.005, idle_timeout_seconds=5.0)


def _data(name: str, size: int = 450) -> bytes:
    return (name.encode() * size)[:size]


class FakeNode:
    """A data node in memory; can cut streams, serve damaged bytes, or be down."""

    def __init__(self, slices: dict[str, bytes]) -> None:
        self.slices = slices
        self.requests: list[tuple[str, int]] = []
        self.cut_after_chunks: dict[str, int] = {}  # cut the next stream of a slice after N chunks
        self.corrupt_times: dict[str, int] = {}  # serve a flipped byte this many times
        self.down = False
        self.gate = asyncio.Event()  # cleared: streams wait before their first chunk
        self.gate.set()

    async def stream(self, address: str, dataset_id: str, slice_name: str, offset: int) -> AsyncGenerator[Chunk, None]:
        self.requests.append((slice_name, offset))
        if self.down:
            raise FetcherError(ErrorKind.UNAVAILABLE, "connection refused", reason=FetcherReason.UPSTREAM_UNAVAILABLE)
        data = self.slices[slice_name]
        if self.corrupt_times.get(slice_name, 0) > 0:
            self.corrupt_times[slice_name] -= 1
            data = bytes([data[0] ^ 1]) + data[1:]
        await self.gate.wait()
        cut = self.cut_after_chunks.pop(slice_name, None)
        for i, start in enumerate(range(offset, len(data), CHUNK)):
            if cut is not None and i == cut:
                raise FetcherError(ErrorKind.UNAVAILABLE, "stream cut", reason=FetcherReason.UPSTREAM_UNAVAILABLE)
            await asyncio.sleep(0)
            yield Chunk(start, data[start : start + CHUNK], len(data))


class FakeScheduler:
    """Hands out slices in order (cycling), optionally failing first."""

    def __init__(self, assignments: list[Assignment]) -> None:
        self.assignments = assignments
        self.calls: list[tuple[str, list[str]]] = []
        self.transient_failures = 0
        self.refuse = False

    async def assign(self, address: str, job_id: str, worker_id: str, cached_slices: list[str]) -> Assignment:
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise FetcherError(ErrorKind.UNAVAILABLE, "scheduler restarting", reason=FetcherReason.UPSTREAM_UNAVAILABLE)
        if self.refuse:
            raise FetcherError(ErrorKind.FAILED_PRECONDITION, "job is finished", reason=FetcherReason.UPSTREAM_REFUSED)
        self.calls.append((job_id, list(cached_slices)))
        return self.assignments[(len(self.calls) - 1) % len(self.assignments)]


def _assignment(name: str, data: bytes, *, sha: str | None = None) -> Assignment:
    return Assignment("ds", name, len(data), sha or hashlib.sha256(data).hexdigest(), "node:1")


def _setup(tmp_path: Path, n: int = 5, capacity: int = 10_000) -> tuple[DataFetcher, FakeNode, FakeScheduler]:
    slices = {f"slice-{i:05d}.safetensors": _data(f"s{i}") for i in range(n)}
    node = FakeNode(slices)
    scheduler = FakeScheduler([_assignment(name, data) for name, data in slices.items()])
    cache = SliceCache(tmp_path / "cache", capacity, grace_seconds=0.0)
    return DataFetcher(cache, node, scheduler, default_prefetch=2, policy=FAST), node, scheduler


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


@pytest.fixture
async def fetcher(tmp_path: Path) -> AsyncIterator[tuple[DataFetcher, FakeNode, FakeScheduler]]:
    core, node, scheduler = _setup(tmp_path)
    yield core, node, scheduler
    await core.close()


async def test_prefetch_keeps_two_ahead(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, scheduler = fetcher
    job = core.open_job("j1", "w1", "sched:1")
    await _until(lambda: job.queued == 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert job.assigned == 2 and len(scheduler.calls) == 2  # nothing beyond the two slots
    first = await core.next_slice("j1")
    assert first.assignment.slice_name == "slice-00000.safetensors"
    assert _read(first.path) == node.slices["slice-00000.safetensors"]
    await _until(lambda: job.queued == 2)  # the freed slot was refilled at once
    assert job.assigned == 3
    names = [(await core.next_slice("j1")).assignment.slice_name for _ in range(3)]
    assert names == [f"slice-{i:05d}.safetensors" for i in (1, 2, 3)]
    await _until(lambda: job.queued == 2)  # slice 4, then slice 0 again (the scheduler cycles): a hit
    snap = core.snapshot()
    assert (snap.stats.cache_misses, snap.stats.cache_hits) == (5, 1)
    assert snap.stats.sha256_mismatches == 0 and snap.open_jobs == 1
    assert snap.stats.bytes_downloaded == sum(len(node.slices[f"slice-{i:05d}.safetensors"]) for i in range(5))


async def test_prefetch_zero_fetches_nothing_ahead(fetcher) -> None:  # type: ignore[no-untyped-def]
    """0 means none (not "the default"): each NextSlice fetches its own slice when it asks."""
    core, _, scheduler = fetcher
    job = core.open_job("j1", "w1", "sched:1", prefetch=0)
    for _ in range(50):
        await asyncio.sleep(0)
    assert job.assigned == 0 and not scheduler.calls  # nothing fetched before it is asked for
    names = [(await core.next_slice("j1")).assignment.slice_name for _ in range(2)]
    assert names == ["slice-00000.safetensors", "slice-00001.safetensors"]
    for _ in range(50):
        await asyncio.sleep(0)
    assert job.assigned == 2 and job.queued == 0  # and nothing beyond what was asked for


async def test_prefetch_unset_is_the_default_and_out_of_range_is_refused(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, _, _ = fetcher
    assert core.open_job("j1", "w1", "sched:1").prefetch == 2 == core.default_prefetch
    with pytest.raises(FetcherError) as err:
        core.open_job("j2", "w1", "sched:1", prefetch=-1)
    assert err.value.reason == FetcherReason.BAD_PREFETCH and "unset for the worker's default" in err.value.message


async def test_next_slice_waits_and_counts_the_wait(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, _ = fetcher
    node.gate.clear()
    core.open_job("j1", "w1", "sched:1", prefetch=1)
    waiter = asyncio.create_task(core.next_slice("j1"))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    node.gate.set()
    handout = await asyncio.wait_for(waiter, 10)
    assert handout.wait_seconds > 0.005 and core.snapshot().stats.wait_seconds >= handout.wait_seconds


async def test_mismatch_is_refetched_once(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, _ = fetcher
    node.corrupt_times["slice-00000.safetensors"] = 1
    core.open_job("j1", "w1", "sched:1")
    handout = await core.next_slice("j1")
    assert _read(handout.path) == node.slices["slice-00000.safetensors"]
    assert core.snapshot().stats.sha256_mismatches == 1
    assert node.requests.count(("slice-00000.safetensors", 0)) == 2


async def test_second_mismatch_is_data_loss_and_the_job_goes_on(tmp_path: Path) -> None:
    core, _, scheduler = _setup(tmp_path)
    bad = scheduler.assignments[0]
    scheduler.assignments[0] = Assignment(
        bad.dataset_id, bad.slice_name, bad.size_bytes, "f" * 64, bad.data_node_address
    )
    try:
        core.open_job("j1", "w1", "sched:1")
        with pytest.raises(FetcherError) as err:
            await core.next_slice("j1")
        assert err.value.kind is ErrorKind.DATA_LOSS and err.value.reason == "SLICE_SHA256_MISMATCH"
        assert "slice-00000.safetensors" in err.value.message and "f" * 64 in err.value.message
        assert core.snapshot().stats.sha256_mismatches == 2
        assert (await core.next_slice("j1")).assignment.slice_name == "slice-00001.safetensors"
        leftovers = [p.name for p in (core.cache.root / "ds").iterdir() if p.name.endswith(".part")]
        assert leftovers == [] and ("f" * 64, "slice-00000.safetensors") not in {
            (k.sha256, k.slice_name) for k in core.cache._entries
        }
    finally:
        await core.close()


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, ErrorKind.RESOURCE_EXHAUSTED),
        (errno.EDQUOT, ErrorKind.RESOURCE_EXHAUSTED),
        (errno.EACCES, ErrorKind.FAILED_PRECONDITION),
        (errno.EROFS, ErrorKind.FAILED_PRECONDITION),
        (errno.EIO, ErrorKind.FAILED_PRECONDITION),
    ],
)
@pytest.mark.parametrize("step", ["temp_path", "commit"])
async def test_a_cache_it_cannot_write_is_exhaustion_only_when_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, kind: ErrorKind, step: str
) -> None:
    core, _, _ = _setup(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(core.cache.root))

    monkeypatch.setattr(core.cache, step, refuse)
    try:
        core.open_job("j1", "w1", "sched:1", prefetch=1)
        with pytest.raises(FetcherError) as err:
            await core.next_slice("j1")
        assert err.value.kind is kind and err.value.reason == FetcherReason.CACHE_WRITE_FAILED
        assert err.value.metadata == {"errno": errno.errorcode[code]}
        assert ("free disk space" in err.value.message) is (kind is ErrorKind.RESOURCE_EXHAUSTED)
        assert "slice-00000.safetensors" in err.value.message
    finally:
        await core.close()


async def test_cut_stream_resumes_from_offset(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, _ = fetcher
    node.cut_after_chunks["slice-00000.safetensors"] = 2
    core.open_job("j1", "w1", "sched:1", prefetch=1)
    handout = await core.next_slice("j1")
    assert _read(handout.path) == node.slices["slice-00000.safetensors"]
    assert [r for r in node.requests if r[0] == "slice-00000.safetensors"] == [
        ("slice-00000.safetensors", 0),
        ("slice-00000.safetensors", 2 * CHUNK),
    ]
    stats = core.snapshot().stats
    assert stats.resumed_fetches == 1 and stats.sha256_mismatches == 0


async def test_data_node_down_gives_unavailable(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, _ = fetcher
    node.down = True
    core.open_job("j1", "w1", "sched:1", prefetch=1)
    with pytest.raises(FetcherError) as err:
        await core.next_slice("j1")
    assert err.value.kind is ErrorKind.UNAVAILABLE and err.value.reason == "DATA_NODE_UNAVAILABLE"
    assert len(node.requests) == FAST.attempts


async def test_scheduler_retries_then_refusal_reaches_the_caller(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, _, scheduler = fetcher
    scheduler.transient_failures = FAST.attempts - 1
    job = core.open_job("j1", "w1", "sched:1", prefetch=1)
    assert (await core.next_slice("j1")).assignment.slice_name == "slice-00000.safetensors"
    await _until(lambda: job.queued == 1)
    scheduler.refuse = True
    await core.next_slice("j1")  # prefetched before the refusal
    with pytest.raises(FetcherError) as err:
        await core.next_slice("j1")
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION and "finished" in err.value.message


async def test_jobs_share_the_cache_and_downloads(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, scheduler = fetcher
    core.open_job("j1", "w1", "sched:1", prefetch=1)
    core.open_job("j2", "w1", "sched:1", prefetch=1)
    a, b = await asyncio.gather(core.next_slice("j1"), core.next_slice("j2"))
    names = {a.assignment.slice_name, b.assignment.slice_name}
    assert names == {"slice-00000.safetensors", "slice-00001.safetensors"}
    core.open_job("j3", "w1", "sched:9", prefetch=1)
    scheduler.assignments.insert(0, scheduler.assignments[0])  # keep the cycle: j3 gets slice 0 again
    before = list(node.requests)
    await _until(lambda: core.jobs["j3"].queued == 1)
    j3_calls = [cached for job, cached in scheduler.calls if job == "j3"]
    assert j3_calls[0] == []  # the data set is not known before the first assignment
    j1_later = [cached for job, cached in scheduler.calls if job == "j1"][-1]
    assert "slice-00000.safetensors" in j1_later  # cached slices go to the scheduler
    stats = core.snapshot().stats
    assert stats.cache_hits >= 1
    assert len(node.requests) - len(before) <= 2  # no slice downloaded twice


async def test_concurrent_requests_for_one_slice_download_it_once(tmp_path: Path) -> None:
    core, node, _ = _setup(tmp_path, n=1)
    try:
        core.open_job("j1", "w1", "sched:1", prefetch=1)
        core.open_job("j2", "w1", "sched:1", prefetch=1)
        await asyncio.gather(core.next_slice("j1"), core.next_slice("j2"))
        assert node.requests == [("slice-00000.safetensors", 0)]
        stats = core.snapshot().stats
        assert stats.cache_misses == 1 and stats.cache_hits >= 1
    finally:
        await core.close()


async def test_close_wakes_waiters_and_releases_pins(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, _ = fetcher
    node.gate.clear()  # downloads hang: the waiter waits until the job closes
    core.open_job("j1", "w1", "sched:1")
    waiter = asyncio.create_task(core.next_slice("j1"))
    await asyncio.sleep(0.001)
    await core.close_job("j1")
    with pytest.raises(FetcherError) as err:
        await waiter
    assert err.value.reason == "JOB_CLOSED"
    assert all(e.pins == 0 for e in core.cache._entries.values())
    with pytest.raises(FetcherError) as err:
        await core.next_slice("j1")
    assert err.value.kind is ErrorKind.NOT_FOUND and "OpenJob" in err.value.message
    with pytest.raises(FetcherError) as err:
        await core.close_job("j1")
    assert err.value.kind is ErrorKind.NOT_FOUND


async def test_held_slices_are_pinned_until_the_job_moves_on(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, _, _ = fetcher
    job = core.open_job("j1", "w1", "sched:1", prefetch=2)
    await _until(lambda: job.queued == 2)
    first = await core.next_slice("j1")
    pins = {k.slice_name: e.pins for k, e in core.cache._entries.items()}
    assert pins[first.assignment.slice_name] == 1  # the one the job works on
    await _until(lambda: job.queued == 2)
    assert sum(pins.values()) >= 2
    await core.next_slice("j1")
    assert core.cache._entries[first.assignment.key].pins == 0  # released when the job took the next


@pytest.mark.parametrize(
    ("args", "kind", "reason"),
    [
        (("", "w", "s:1", 0), ErrorKind.INVALID_ARGUMENT, "JOB_ID_MISSING"),
        (("a/b", "w", "s:1", 0), ErrorKind.INVALID_ARGUMENT, "BAD_JOB_ID"),
        (("j", "", "s:1", 0), ErrorKind.INVALID_ARGUMENT, "WORKER_ID_MISSING"),
        (("j", "w", "", 0), ErrorKind.INVALID_ARGUMENT, "COORDINATOR_MISSING"),
        (("j", "w", "s:1", 1000), ErrorKind.INVALID_ARGUMENT, "BAD_PREFETCH"),
        (("j", "w", "no-port", 0), ErrorKind.INVALID_ARGUMENT, "BAD_COORDINATOR_ADDRESS"),
    ],
)
async def test_open_job_validates(fetcher, args: tuple[str, str, str, int], kind: ErrorKind, reason: str) -> None:  # type: ignore[no-untyped-def]
    core, _, _ = fetcher
    with pytest.raises(FetcherError) as err:
        core.open_job(*args)
    assert err.value.kind is kind and err.value.reason == reason


async def test_reopen_is_idempotent_but_not_elsewhere(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, _, _ = fetcher
    job = core.open_job("j1", "w1", "sched:1")
    assert core.open_job("j1", "w1", "sched:1") is job
    with pytest.raises(FetcherError) as err:
        core.open_job("j1", "w1", "sched:2")
    assert err.value.kind is ErrorKind.ALREADY_EXISTS


async def test_after_restart_cached_slices_are_verified_before_use(tmp_path: Path) -> None:
    core, node, _ = _setup(tmp_path, n=2)
    core.open_job("j1", "w1", "sched:1", prefetch=1)
    await core.next_slice("j1")
    await core.next_slice("j1")
    await core.close()
    damaged = next(p for p in (tmp_path / "cache" / "ds").iterdir() if p.name.endswith("slice-00001.safetensors"))
    damaged.chmod(0o644)
    damaged.write_bytes(b"x" * damaged.stat().st_size)
    restarted, _, _ = _setup(tmp_path, n=2)
    restarted.source = node
    assert restarted.cache.rebuild() == (2, 0)
    node.requests.clear()
    try:
        restarted.open_job("j1", "w1", "sched:1", prefetch=1)
        one = await restarted.next_slice("j1")
        two = await restarted.next_slice("j1")
        assert _read(one.path) == node.slices["slice-00000.safetensors"]
        assert _read(two.path) == node.slices["slice-00001.safetensors"]
        assert node.requests == [("slice-00001.safetensors", 0)]  # only the damaged one again
        stats = restarted.snapshot().stats
        assert (stats.cache_hits, stats.cache_misses, stats.sha256_mismatches) == (1, 1, 1)
    finally:
        await restarted.close()


async def test_unusable_assignment_is_refused(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, scheduler = fetcher
    good = scheduler.assignments[0]
    scheduler.assignments[0] = Assignment("ds", "../../etc/passwd", good.size_bytes, good.sha256, "node")
    core.open_job("j1", "w1", "sched:1", prefetch=1)
    with pytest.raises(FetcherError) as err:
        await core.next_slice("j1")
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION and err.value.reason == "BAD_ASSIGNMENT"
    assert "slice_name" in err.value.message and "data_node_address" in err.value.message
    assert node.requests == []


async def test_stopping_answers_waiting_callers(fetcher) -> None:  # type: ignore[no-untyped-def]
    core, node, _ = fetcher
    node.gate.clear()
    core.open_job("j1", "w1", "sched:1")
    waiter = asyncio.create_task(core.next_slice("j1"))
    await asyncio.sleep(0.001)
    await core.close()
    with pytest.raises(FetcherError) as err:
        await waiter
    assert err.value.kind is ErrorKind.UNAVAILABLE and err.value.reason == "FETCHER_STOPPING"
    assert not [p for p in core.cache.root.rglob("*.part")]  # the cancelled download left nothing


def _damage(path: str, *, remove: bool = False) -> None:
    cached = Path(path)
    cached.chmod(0o644)
    if remove:
        cached.unlink()
    else:
        cached.write_bytes(b"x" * cached.stat().st_size)


async def test_a_cached_slice_damaged_between_handouts_is_evicted_and_fetched_again(tmp_path: Path) -> None:
    core, node, _ = _setup(tmp_path, n=2)
    try:
        job = core.open_job("j1", "w1", "sched:1", prefetch=1)
        first = await core.next_slice("j1")
        assert first.assignment.slice_name == "slice-00000.safetensors"
        await core.next_slice("j1")  # slice 1; its freed slot queues slice 0 again, from the cache
        await _until(lambda: job.queued == 1)
        assert node.requests.count(("slice-00000.safetensors", 0)) == 1 and core.snapshot().stats.cache_hits == 1
        _damage(first.path)  # same size: only the sha256 tells
        again = await core.next_slice("j1")
        assert again.assignment.slice_name == "slice-00000.safetensors"
        assert _read(again.path) == node.slices["slice-00000.safetensors"]
        assert node.requests.count(("slice-00000.safetensors", 0)) == 2  # fetched again
        assert core.snapshot().stats.sha256_mismatches == 1
        # a file cut short or removed is caught the same way
        nxt = await core.next_slice("j1")
        assert nxt.assignment.slice_name == "slice-00001.safetensors"
        await _until(lambda: job.queued == 1)
        _damage(again.path, remove=True)
        last = await core.next_slice("j1")
        assert _read(last.path) == node.slices["slice-00000.safetensors"]
        assert node.requests.count(("slice-00000.safetensors", 0)) == 3
    finally:
        await core.close()
