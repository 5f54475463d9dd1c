"""One job's prefetch loop: keeps the job's next ``prefetch`` slices ready (or being fetched).

The loop holds ``prefetch`` slots. It takes a free slot, asks the scheduler for the next
assignment, obtains the slice (cache hit or download) pinned in the cache, and queues it.
NextSlice takes the oldest queued slice and frees its slot, so exactly ``prefetch`` slices
are ready or on their way whenever the job is working on one. With ``prefetch`` 0 nothing is
fetched ahead: a NextSlice that finds nothing queued opens one slot for its own slice. A failure (scheduler refused,
data node gone, DATA_LOSS) is queued in the slice's place and raised to the NextSlice caller
that takes it; the loop goes on with the next assignment. A slice is checked against its
size and sha256 once more right before NextSlice hands it out; a damaged one is evicted and
fetched again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable

from tendril.core import liveness
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.data_fetcher.cache import CacheEntry, SliceCache
from tendril.data_fetcher.errors import FetcherError, FetcherReason
from tendril.data_fetcher.model import Assignment, Coordinator, FetchPolicy, check_assignment
from tendril_sdk.retry import retry

log = get_logger("tendril.data_fetcher.jobs")


@dataclasses.dataclass(frozen=True)
class Ready:
    """A verified slice, pinned in the cache for the job."""

    entry: CacheEntry
    assignment: Assignment


@dataclasses.dataclass(frozen=True)
class Failed:
    """What went wrong where a slice should have been."""

    error: FetcherError


@dataclasses.dataclass(frozen=True)
class Handout:
    """What NextSlice returns."""

    path: str
    assignment: Assignment
    wait_seconds: float


class JobFetcher:
    """Prefetch state of one job."""

    def __init__(
        self,
        *,
        job_id: str,
        worker_id: str,
        coordinator_address: str,
        prefetch: int,
        coordinator: Coordinator,
        obtain: Callable[[Assignment], Awaitable[CacheEntry]],
        check: Callable[[CacheEntry, Assignment], Awaitable[CacheEntry]],
        cache: SliceCache,
        policy: FetchPolicy,
    ) -> None:
        self.job_id = job_id
        self.worker_id = worker_id
        self.coordinator_address = coordinator_address
        self.prefetch = prefetch
        self._coordinator = coordinator
        self._obtain = obtain
        self._check = check
        self._cache = cache
        self._policy = policy
        self._slots = asyncio.Semaphore(prefetch)
        self._items: collections.deque[Ready | Failed] = collections.deque()
        # NOTE: an Event (not a Condition) so that queueing needs no await: a pinned slice is
        # queued in the same step that obtained it and can never be lost to a cancellation.
        self._changed = asyncio.Event()
        self._closed: FetcherError | None = None  # what waiting callers get once closed
        self._current: Ready | None = None
        self._task: asyncio.Task[None] | None = None
        self.dataset_id = ""  # learnt from the first assignment
        self.assigned = 0  # assignments received (a test and log figure)

    def start(self) -> None:
        self._task = liveness.supervised(self._run(), name=f"prefetch-{self.job_id}")

    @property
    def queued(self) -> int:
        """Slices (or failures) ready for NextSlice."""
        return len(self._items)

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            item: Ready | Failed
            try:
                assignment = await self._assign()
                item = Ready(await self._obtain(assignment), assignment)
            except FetcherError as exc:
                log.warning("prefetch.failed", job_id=self.job_id, reason=exc.reason, error=exc.message)
                item = Failed(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must reach the caller, not kill the loop silently
                log.error("prefetch.crashed", job_id=self.job_id, exc_info=exc)
                failure = f"prefetch failed: {type(exc).__name__}: {exc}"
                item = Failed(FetcherError(ErrorKind.INTERNAL, failure, reason=FetcherReason.PREFETCH_FAILED))
            self._items.append(item)
            self._changed.set()

    async def _assign(self) -> Assignment:
        def ask() -> Awaitable[Assignment]:
            cached = self._cache.names(self.dataset_id) if self.dataset_id else []
            return self._coordinator.assign(self.coordinator_address, self.job_id, self.worker_id, cached)

        assignment = await retry(ask, self._policy.retry_policy())
        check_assignment(assignment, self.coordinator_address)
        self.dataset_id = assignment.dataset_id
        self.assigned += 1
        return assignment

    async def next(self) -> Handout:
        """The job's next slice, waiting for it if it is not ready yet."""
        start = time.monotonic()
        if not self.prefetch and not self._items:
            self._slots.release()  # nothing is fetched ahead: fetch this caller's slice now
        while not self._items and self._closed is None:
            self._changed.clear()
            await self._changed.wait()
        if self._closed is not None:
            raise self._closed
        item = self._items.popleft()
        if self.prefetch:
            self._slots.release()
        if isinstance(item, Failed):
            raise item.error
        # NOTE: the file is checked again right before it is handed out, however long it waited
        # in the cache or the queue: a damaged one is evicted and fetched again here.
        try:
            entry = await self._check(item.entry, item.assignment)
        except BaseException:
            self._cache.unpin(item.assignment.key)
            raise
        item = Ready(entry, item.assignment)
        # The job is done with the slice it had: it stays protected for the grace period only.
        if self._current is not None:
            self._cache.unpin(self._current.assignment.key)
        self._current = item
        return Handout(str(entry.path), item.assignment, time.monotonic() - start)

    async def close(self, *, stopping: bool = False) -> None:
        """Stop prefetching, wake waiting callers, let go of every slice this job held."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._closed = _closed_error(self.job_id, stopping)
        self._changed.set()
        held = [i for i in self._items if isinstance(i, Ready)]
        self._items.clear()
        if self._current is not None:
            held.append(self._current)
            self._current = None
        for item in held:
            self._cache.unpin(item.assignment.key)


def _closed_error(job_id: str, stopping: bool) -> FetcherError:
    if stopping:
        return FetcherError(
            ErrorKind.UNAVAILABLE,
            f"the DataFetcher is stopping; job {job_id} gets no more slices from this process. Once it is back, "
            "call OpenJob again",
            reason=FetcherReason.FETCHER_STOPPING,
            metadata={"job_id": job_id},
        )
    return FetcherError(
        ErrorKind.FAILED_PRECONDITION,
        f"job {job_id} was closed while waiting for its next slice; call OpenJob again to fetch for it",
        reason=FetcherReason.JOB_CLOSED,
        metadata={"job_id": job_id},
    )
