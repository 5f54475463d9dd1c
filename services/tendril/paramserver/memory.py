"""The parameter server's memory budget: every big buffer of a round, counted until it is freed.

A round's bytes live in memory: each push being received is staged whole (its bytes must be
held until it commits, see :mod:`.spool`), committed pushes are folded into one fp32
accumulator per run, and the round's update is served from memory. Each of these buffers is
an anonymous mapping taken from this budget and counted in it until the mapping is actually
unmapped, that is until the last view of it is gone (a pull still streaming an update that
was dropped keeps counting until it ends).

Pushes are admitted against the budget (:meth:`MemoryBudget.wait_for_room`): a push waits at
its header, before the server accepts it, until its payload fits. Kept updates and idle staged
pushes (cut, waiting for a resume) are dropped first, oldest first, to make room. A push is
admitted even when it does not fit once nothing is left to wait for (no push is being
received, no checkpoint is being written): the budget delays pushes, it never deadlocks them.
Buffers a round cannot do without (its accumulator, its update) are taken at once
(:meth:`MemoryBudget.take`), after dropping what can be dropped.

# NOTE: anonymous mmaps, not numpy/bytearray allocations: with the data plane's
# GLIBC_TUNABLES (mmap threshold 256 MiB, trim threshold 1 GiB) a freed buffer below 256 MiB
# would stay in the heap and in the RSS; an unmapped mapping is returned to the kernel at once.
# Private mappings (mmap's default is MAP_SHARED: shared memory, whose pages MADV_DONTNEED only
# unmaps, without freeing them): MADV_DONTNEED frees a private page, and it reads as zero after.

Buffers are pooled: a buffer nobody holds any more goes back to a pool of idle mappings
(while the budget has room for it beside what is held) and the next buffer of about its size
is taken from there. A fresh mapping costs a page fault and the kernel zeroing a page for each
4 KiB written the first time: measured on a 2-core machine, filling a fresh 400 MB mapping took
0.25 CPU-seconds (almost all in the kernel), filling a reused one 0.03, and unmapping it 0.05;
a 400 MB round (3 staged pushes, the accumulator, the update) paid that five times. Pooled
mappings count in :attr:`MemoryBudget.pooled` (not in ``held``): they are unmapped, oldest
first, whenever a fresh mapping would take the budget over its limit. A pooled buffer holds
the bytes of its last use: :meth:`MemoryBudget.allocate` gives them only to callers that write
every byte before reading any (staging buffers, updates), and ``zeroed=True`` clears them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import mmap
import threading
import weakref
from collections.abc import Callable, Hashable

import numpy as np
import numpy.typing as npt

from tendril.core.logs import get_logger

log = get_logger("tendril.paramserver")

Buffer = npt.NDArray[np.uint8]

# NOTE: a pooled mapping serves a request up to this much smaller than itself (a push, an
# update and the accumulator of one model differ by their SafeTensors headers only).
POOL_SLACK_BYTES = 64 * 1024
POOL_SLACK_FRACTION = 64  # ... or 1/64 of the request, whichever is more


@dataclasses.dataclass
class _Droppable:
    nbytes: int
    drop: Callable[[], None]
    last: bool  # dropped only once nothing else is left to drop
    pinned: Callable[[], bool] | None = None  # while it answers True, not dropped at all


class MemoryBudget:
    """Bytes of big buffers held by the parameter server, against ``limit`` (0: no limit yet)."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self.pooled = 0  # bytes of idle mappings kept for reuse (see the module's docstring)
        self._pool: list[mmap.mmap] = []  # oldest first
        self._mappings: dict[int, mmap.mmap] = {}  # id(buffer) -> its mapping, while it is held
        self._lock = threading.Lock()  # finalizers run on whichever thread drops the last view
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._droppable: collections.OrderedDict[Hashable, _Droppable] = collections.OrderedDict()
        # Bytes whose release does not wait on pushes: what admission may wait for.
        self.staging = 0  # pushes being received or waiting to commit
        self.checkpointing = 0  # a closed round's momentum buffer until it is on disk
        # NOTE: sizes of the staged pushes received whole, being verified and folded. One of them
        # is counted as leaving: a push's pages are given back block by block as it is folded,
        # while the next push's pages fill as its bytes arrive, so the next push may be admitted
        # once the previous one arrived whole; a third waits for the first to be gone.
        self._finishing: list[int] = []

    # -- buffers ----------------------------------------------------------------------------------

    def allocate(self, nbytes: int, *, zeroed: bool = False) -> Buffer:
        """A buffer of ``nbytes`` (an anonymous mapping, pooled), counted until nobody holds it.

        A buffer from the pool holds the bytes of its last use unless ``zeroed``: the caller
        must write every byte before it reads one.
        """
        nbytes = max(1, nbytes)
        mapping = self._from_pool(nbytes)
        fresh = mapping is None
        if mapping is None:
            self._evict(nbytes)
            mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            # NOTE: 2 MiB pages where transparent huge pages are "madvise" (a common default): a
            # fresh 400 MB buffer then costs 200 page faults, not 100,000 (on a virtual machine
            # each of those can cost the host a fault of its own besides).
            with contextlib.suppress(AttributeError, OSError):
                mapping.madvise(mmap.MADV_HUGEPAGE)
        buffer: Buffer = np.frombuffer(mapping, dtype=np.uint8, count=nbytes)
        if zeroed and not fresh:
            buffer.fill(0)  # (a fresh mapping reads as zeros)
        with self._lock:
            self.held += nbytes
            self.peak = max(self.peak, self.held)
            self._mappings[id(buffer)] = mapping
        weakref.finalize(buffer, self._freed, nbytes, id(buffer), mapping)
        return buffer

    def take(self, nbytes: int, *, zeroed: bool = False) -> Buffer:
        """A buffer the caller cannot do without: dropping what may be dropped, never waiting."""
        self.make_room(nbytes)
        return self.allocate(nbytes, zeroed=zeroed)

    def _freed(self, nbytes: int, key: int, mapping: mmap.mmap) -> None:
        with self._lock:
            self.held -= nbytes
            self._mappings.pop(key, None)
            if self.limit and self.held + self.pooled + len(mapping) <= self.limit:
                self._pool.append(mapping)
                self.pooled += len(mapping)
            # else: unmapped once its last view is released (right after this finalizer)
        self._wake()

    @staticmethod
    def serves(size: int, nbytes: int) -> bool:
        """A buffer of ``size`` bytes may serve a request of ``nbytes`` (see POOL_SLACK_*)."""
        return nbytes <= size <= nbytes + max(POOL_SLACK_BYTES, nbytes // POOL_SLACK_FRACTION)

    def _from_pool(self, nbytes: int) -> mmap.mmap | None:
        """The smallest pooled mapping that serves ``nbytes`` (see POOL_SLACK_*), taken out of the pool."""
        with self._lock:
            fits = [m for m in self._pool if self.serves(len(m), nbytes)]
            if not fits:
                return None
            mapping = min(fits, key=len)
            self._pool.remove(mapping)
            self.pooled -= len(mapping)
            return mapping

    def _evict(self, nbytes: int) -> None:
        """Unmap pooled mappings, oldest first, until a fresh one of ``nbytes`` keeps the total within the limit."""
        while True:
            with self._lock:
                if not self._pool or (self.limit and self.held + self.pooled + nbytes <= self.limit):
                    return
                mapping = self._pool.pop(0)
                self.pooled -= len(mapping)
            with contextlib.suppress(BufferError):  # (nobody holds a pooled mapping)
                mapping.close()

    def trim(self) -> None:
        """Unmap every pooled mapping."""
        with self._lock:
            pool, self._pool, self.pooled = self._pool, [], 0
        for mapping in pool:
            with contextlib.suppress(BufferError):
                mapping.close()

    @property
    def over(self) -> bool:
        """More is held than the limit allows (pushes were admitted while others are being folded)."""
        return bool(self.limit) and self.held > self.limit

    def release_pages(self, buffer: memoryview, start: int, end: int) -> None:
        """Give the whole pages of bytes [start, end) of ``buffer`` (from :meth:`allocate`) back to the kernel.

        The buffer stays valid; those pages read as zeros until written again.
        """
        mapping = self._mappings.get(id(buffer.obj))
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = end - end % mmap.PAGESIZE
        if mapping is not None and last > first:
            with contextlib.suppress(OSError, ValueError):
                mapping.madvise(mmap.MADV_DONTNEED, first, last - first)

    # -- what may be dropped -------------------------------------------------------------------------

    def droppable(
        self,
        key: Hashable,
        nbytes: int,
        drop: Callable[[], None],
        *,
        last: bool = False,
        pinned: Callable[[], bool] | None = None,
    ) -> None:
        """Register something that ``drop()`` lets go of when room is needed (kept updates, idle pushes).

        The oldest registered goes first, those registered with ``last`` only after all others;
        while ``pinned()`` is true it is not dropped (it still counts in the budget).
        """
        self._droppable[key] = _Droppable(nbytes, drop, last, pinned)
        self._droppable.move_to_end(key)

    def touch(self, key: Hashable) -> None:
        """``key`` was used: it is dropped after everything used before it."""
        if key in self._droppable:
            self._droppable.move_to_end(key)

    def keep(self, key: Hashable) -> None:
        """``key`` may no longer be dropped (it is in use again, or gone)."""
        self._droppable.pop(key, None)

    def make_room(self, nbytes: int) -> None:
        """Drop registered things, oldest first, until ``nbytes`` more fit (or nothing is left to drop).

        What is dropped is given back at once unless a reader still holds it (a pull streaming a
        dropped update): then it counts until that reader is done.
        """
        while self.limit and self.held + nbytes > self.limit:
            free = [(k, item) for k, item in self._droppable.items() if item.pinned is None or not item.pinned()]
            if not free:
                return
            key = next((k for k, item in free if not item.last), free[0][0])
            item = self._droppable.pop(key)
            log.info("paramserver.memory_dropped", what=str(key), bytes=item.nbytes)
            item.drop()

    # -- admission --------------------------------------------------------------------------------------

    async def wait_for_room(self, need: Callable[[], int]) -> None:
        """Wait (first come, first served) until ``need()`` more bytes fit the budget.

        Returns without waiting once nothing that will be given back without pushes is held
        (no push staged, no checkpoint being written): waiting longer could only deadlock.
        The caller takes its buffers right after, without awaiting anything in between.
        """
        self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None
        try:
            while True:
                first = not self._waiters if waiter is None else self._waiters[0] is waiter
                if first and self._admits(need()):
                    return
                if waiter is None:
                    waiter = self._loop.create_future()
                    self._waiters.append(waiter)
                    continue
                await waiter
                waiter = self._loop.create_future()
                self._waiters[0] = waiter
        finally:
            if waiter is not None:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            self._wake()  # the next in line may fit now

    def _admits(self, nbytes: int) -> bool:
        if not self.limit:
            return True
        self.make_room(nbytes)
        with self._lock:
            if self.held - max(self._finishing, default=0) + nbytes <= self.limit:
                return True
            return self.staging == 0 and self.checkpointing == 0

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or not self._waiters:
            return

        def wake() -> None:
            if self._waiters and not self._waiters[0].done():
                self._waiters[0].set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(wake)

    @property
    def finishing(self) -> int:
        """Bytes of staged pushes received whole (verified and folded next)."""
        return sum(self._finishing)

    def finish(self, nbytes: int) -> None:
        """A staged push of ``nbytes`` was received whole: it is folded next (see ``_finishing``)."""
        self._finishing.append(nbytes)
        self._wake()

    def finished(self, nbytes: int) -> None:
        """A push counted by :meth:`finish` is gone."""
        with contextlib.suppress(ValueError):
            self._finishing.remove(nbytes)

    def released(self) -> None:
        """Tell the waiters that ``staging``/``checkpointing`` went down (re-check their room)."""
        self._wake()
