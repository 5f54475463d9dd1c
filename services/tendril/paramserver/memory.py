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
# would stay in the heap and in the RSS; an unmapped mapping is returned to the kernel at once,
# and its pages are only allocated when first written (an accumulator of zeros costs nothing
# until pushes are folded into it).
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

from tendril.core.logs import get_logger

log = get_logger("tendril.paramserver")


@dataclasses.dataclass
class _Droppable:
    nbytes: int
    drop: Callable[[], None]
    last: bool  # dropped only once nothing else is left to drop


class MemoryBudget:
    """Bytes of big buffers held by the parameter server, against ``limit`` (0: no limit yet)."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
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

    def allocate(self, nbytes: int) -> mmap.mmap:
        """An anonymous mapping of ``nbytes`` (at least 1), counted until it is unmapped."""
        buffer = mmap.mmap(-1, max(1, nbytes))
        size = len(buffer)
        with self._lock:
            self.held += size
            self.peak = max(self.peak, self.held)
        weakref.finalize(buffer, self._freed, size)
        return buffer

    def take(self, nbytes: int) -> mmap.mmap:
        """A buffer the caller cannot do without: dropping what may be dropped, never waiting."""
        self.make_room(nbytes)
        return self.allocate(nbytes)

    def _freed(self, nbytes: int) -> None:
        with self._lock:
            self.held -= nbytes
        self._wake()

    # -- what may be dropped -------------------------------------------------------------------------

    def droppable(self, key: Hashable, nbytes: int, drop: Callable[[], None], *, last: bool = False) -> None:
        """Register something that ``drop()`` lets go of when room is needed (kept updates, idle pushes).

        The oldest registered goes first, those registered with ``last`` only after all others.
        """
        self._droppable[key] = _Droppable(nbytes, drop, last)
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
        while self._droppable and self.limit and self.held + nbytes > self.limit:
            key = next((k for k, item in self._droppable.items() if not item.last), next(iter(self._droppable)))
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
