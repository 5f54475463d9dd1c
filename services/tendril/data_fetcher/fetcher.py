"""The DataFetcher core (no gRPC): open jobs, the shared cache, shared downloads, counters."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from pathlib import Path

from tendril.core import metrics
from tendril.core.errors import ErrorKind
from tendril.core.files import file_sha256
from tendril.core.ids import JOB_ID, PEER_ID, shown
from tendril.core.logs import get_logger
from tendril.data_fetcher.cache import CacheEntry, SliceCache
from tendril.data_fetcher.download import download_verified
from tendril.data_fetcher.errors import FetcherError, FetcherReason
from tendril.data_fetcher.jobs import Handout, JobFetcher
from tendril.data_fetcher.model import (
    Assignment,
    Coordinator,
    FetcherStats,
    FetchPolicy,
    SliceKey,
    SliceSource,
    is_dialable,
)

log = get_logger("tendril.data_fetcher")

MAX_PREFETCH = 32
INLINE_HASH_BYTES = 1 << 20  # slices up to this size are re-hashed at hand-out on the event loop


@dataclasses.dataclass(frozen=True)
class StatsSnapshot:
    """Counters and gauges for GetStats."""

    stats: FetcherStats
    cache_bytes: int
    cache_capacity_bytes: int
    evictions: int
    open_jobs: int


def _invalid(message: str, reason: FetcherReason) -> FetcherError:
    return FetcherError(ErrorKind.INVALID_ARGUMENT, message, reason=reason)


def check_job_id(job_id: str) -> None:
    if not job_id:
        raise _invalid("job_id is required", FetcherReason.JOB_ID_MISSING)
    problem = JOB_ID.problem(job_id, "job_id")
    if problem is not None:
        raise _invalid(problem, FetcherReason.BAD_JOB_ID)


def _matches(path: Path, size: int, sha256: str) -> bool:
    """True when the file at ``path`` has ``size`` bytes and hashes to ``sha256``."""
    try:
        return path.stat().st_size == size and file_sha256(path) == sha256
    except OSError:
        return False


class DataFetcher:
    """Jobs, their prefetch loops, and the slice cache they share."""

    def __init__(
        self,
        cache: SliceCache,
        source: SliceSource,
        coordinator: Coordinator,
        *,
        default_prefetch: int = 2,
        policy: FetchPolicy | None = None,
    ) -> None:
        if default_prefetch < 1:
            raise ValueError(f"default prefetch must be at least 1, got {default_prefetch}")
        self.cache = cache
        self.source = source
        self.coordinator = coordinator
        self.default_prefetch = default_prefetch
        self.policy = policy or FetchPolicy()
        self.stats = FetcherStats()
        self.jobs: dict[str, JobFetcher] = {}
        self._downloads: dict[SliceKey, asyncio.Task[CacheEntry]] = {}
        self._exported = metrics.TotalsMirror(
            {
                "cache_hits": metrics.DATA_CACHE_HITS,
                "cache_misses": metrics.DATA_CACHE_MISSES,
                "bytes_downloaded": metrics.BYTES_RECEIVED.labels(stream="slice"),
            }
        )

    # -- jobs ---------------------------------------------------------------------------

    def open_job(
        self, job_id: str, worker_id: str, coordinator_address: str, prefetch: int | None = None
    ) -> JobFetcher:
        """Start fetching for a job; opening an open job again with the same scheduler is a no-op.

        ``prefetch``: slices kept ready ahead; None means the worker's default, 0 none (each
        NextSlice fetches its own slice).
        """
        check_job_id(job_id)
        if not worker_id:
            raise _invalid(
                "worker_id is required (the scheduler assigns slices per worker)", FetcherReason.WORKER_ID_MISSING
            )
        if (problem := PEER_ID.problem(worker_id, "worker_id")) is not None:
            raise _invalid(problem, FetcherReason.BAD_WORKER_ID)
        if not coordinator_address:
            raise _invalid(
                "coordinator_address is required: the address of the job's scheduler CoordinationService",
                FetcherReason.COORDINATOR_MISSING,
            )
        if not is_dialable(coordinator_address):
            raise _invalid(
                f"coordinator_address {shown(coordinator_address)} is not host:port (or unix:PATH)",
                FetcherReason.BAD_COORDINATOR_ADDRESS,
            )
        if prefetch is not None and not 0 <= prefetch <= MAX_PREFETCH:
            raise _invalid(
                f"prefetch must be 0 (none) to {MAX_PREFETCH}, or unset for the worker's default; got {prefetch}",
                FetcherReason.BAD_PREFETCH,
            )
        existing = self.jobs.get(job_id)
        if existing is not None:
            if existing.coordinator_address == coordinator_address and existing.worker_id == worker_id:
                return existing
            raise FetcherError(
                ErrorKind.ALREADY_EXISTS,
                f"job {job_id} is already open with scheduler {existing.coordinator_address} and worker "
                f"{existing.worker_id}; CloseJob it first to reopen it differently",
                reason=FetcherReason.JOB_ALREADY_OPEN,
            )
        job = JobFetcher(
            job_id=job_id,
            worker_id=worker_id,
            coordinator_address=coordinator_address,
            prefetch=self.default_prefetch if prefetch is None else prefetch,
            coordinator=self.coordinator,
            obtain=self.obtain,
            check=self.checked,
            cache=self.cache,
            policy=self.policy,
        )
        self.jobs[job_id] = job
        job.start()
        log.info("job.opened", job_id=job_id, scheduler=coordinator_address, prefetch=job.prefetch)
        return job

    def _job(self, job_id: str) -> JobFetcher:
        check_job_id(job_id)
        job = self.jobs.get(job_id)
        if job is None:
            raise FetcherError(
                ErrorKind.NOT_FOUND,
                f"job {job_id} is not open at this DataFetcher; call OpenJob first",
                reason=FetcherReason.JOB_NOT_OPEN,
                metadata={"job_id": job_id},
            )
        return job

    async def next_slice(self, job_id: str) -> Handout:
        handout = await self._job(job_id).next()
        self.stats.wait_seconds += handout.wait_seconds
        metrics.DATA_WAIT.observe(handout.wait_seconds)
        self.export_metrics()
        return handout

    async def close_job(self, job_id: str, *, stopping: bool = False) -> None:
        job = self._job(job_id)
        del self.jobs[job_id]
        await job.close(stopping=stopping)
        log.info("job.closed", job_id=job_id, assigned=job.assigned)

    # -- slices -------------------------------------------------------------------------

    async def obtain(self, a: Assignment) -> CacheEntry:
        """Slice ``a`` verified in the cache and pinned once for the caller (a hit or a download)."""
        key = a.key
        self.cache.check_fits(key, a.size_bytes)
        counted = False
        while True:
            entry = self.cache.get(key)
            if entry is not None:
                if not counted:
                    self.stats.cache_hits += 1
                    counted = True
                if entry.verified or await self._verify_cached(entry):
                    pinned = self.cache.get(key, pin=True)
                    if pinned is not None:
                        self.export_metrics()
                        return pinned
                else:
                    self.stats.cache_hits -= 1  # it was damaged: this becomes a miss below
                    counted = False
                continue
            task = self._downloads.get(key)
            if task is None:
                if not counted:
                    self.stats.cache_misses += 1
                    counted = True
                task = asyncio.create_task(download_verified(self.source, self.cache, a, self.stats, self.policy))
                self._downloads[key] = task
                task.add_done_callback(functools.partial(self._download_done, key))
            elif not counted:
                self.stats.cache_hits += 1  # another job is downloading it: no second download
                counted = True
            # NOTE: shield: a job that closes must not cancel a download other jobs wait for.
            await asyncio.shield(task)

    async def checked(self, entry: CacheEntry, a: Assignment) -> CacheEntry:
        """``entry`` if its file still has the manifest's size and sha256 (checked now, right before
        it is handed out); a damaged one is evicted and fetched again (pinned for the caller)."""
        if a.size_bytes <= INLINE_HASH_BYTES:
            # NOTE: hashing a small slice (~1 ms per MiB) costs less than a hop to a worker thread.
            intact = _matches(entry.path, a.size_bytes, a.sha256)
        else:
            entry.pins += 1  # no eviction while hashing
            try:
                intact = await asyncio.to_thread(_matches, entry.path, a.size_bytes, a.sha256)
            finally:
                entry.pins -= 1
        if intact:
            return entry
        self.stats.sha256_mismatches += 1
        log.warning("cache.damaged", slice=a.slice_name, path=str(entry.path), when="handout")
        self.cache.remove(entry.key)
        return await self.obtain(a)

    def _download_done(self, key: SliceKey, task: asyncio.Task[CacheEntry]) -> None:
        self._downloads.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone away meanwhile

    async def _verify_cached(self, entry: CacheEntry) -> bool:
        """Hash a slice cached before this process started; a damaged one is deleted."""
        entry.pins += 1  # no eviction while hashing
        try:
            actual = await asyncio.to_thread(file_sha256, entry.path)
        except OSError:
            actual = ""
        finally:
            entry.pins -= 1
        if actual == entry.key.sha256:
            self.cache.mark_verified(entry.key)
            return True
        self.stats.sha256_mismatches += 1
        log.warning("cache.damaged", slice=entry.key.slice_name, path=str(entry.path))
        self.cache.remove(entry.key)
        return False

    # -- state --------------------------------------------------------------------------

    def export_metrics(self) -> None:
        """Bring the Prometheus figures up to date with the stats and the cache."""
        self._exported.update(self.stats)
        metrics.DATA_CACHE_BYTES.set(self.cache.bytes)
        metrics.DATA_CACHE_CAPACITY_BYTES.set(self.cache.capacity_bytes)

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            stats=dataclasses.replace(self.stats),
            cache_bytes=self.cache.bytes,
            cache_capacity_bytes=self.cache.capacity_bytes,
            evictions=self.cache.evictions,
            open_jobs=len(self.jobs),
        )

    async def close(self) -> None:
        """Close every job and stop every download (their temp files are removed)."""
        for job_id in list(self.jobs):
            await self.close_job(job_id, stopping=True)
        tasks = list(self._downloads.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, FetcherError):
                await task
