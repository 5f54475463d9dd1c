"""One push being received into its own staging buffer in memory (resumable, never part of an aggregate).

A push is staged whole, chunk by chunk, at its offsets in a buffer of its payload's size (taken
from the server's :class:`~tendril.paramserver.memory.MemoryBudget`), and hashed on the way by
its :class:`~tendril.core.streaming.Receiver`. It counts only once it is complete, its digest
matches and its own SafeTensors header agrees with the stream header; only then is it folded
into the round's accumulator. A push whose call broke off keeps its buffer, so a retry with the
same stream id resumes at ``received`` (until the buffer is needed for another push, or the
round closes, or the server restarts: then the retry starts again from 0).

What a transport feeds (the receiving seam):

* ``write(offset, data)``: bytes at their offset, in order after the resume point;
* ``view(offset, length)``: the writable place where payload bytes [offset, offset+length)
  belong, for a transport that receives straight into it (``sock.recv_into(view)``), then
  ``landed(offset, n)`` to say n bytes arrived there (hashed and counted once, there);
* ``range_view(offset, length)`` and ``held``: for a transport that receives ranges of the
  payload in any order over several connections (:class:`tendril.core.dataplane.Held` keeps
  what arrived beyond ``received``, and ``landed`` extends the prefix once it is contiguous;
  a retry of the push resumes each range where it stopped);
* ``writable(offset, end)``: awaited before bytes [offset, end) are put in place (see below);
* ``received`` (the resume offset), ``finish()`` (verify, return the Layout), ``discard()``.

A push admitted while the memory budget is full (the server's other staged push is being folded,
see :meth:`tendril.paramserver.memory.MemoryBudget.finish`) may be received into that push's
buffer instead of a buffer of its own (:meth:`Spool.hand_over`): its bytes go into place only
once the fold has added what was there to the sum (:class:`Handover`). The buffer's pages are
used again as they are, neither given back to the kernel nor faulted in afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

import numpy as np

from tendril.core import codecs
from tendril.core.dataplane import Held
from tendril.core.streaming import Hash, Receiver, StreamError, StreamInfo, new_hash, same_tensors
from tendril.core.tensorfile import Layout, TensorFileError
from tendril.paramserver.aggregate import payload_layout
from tendril.paramserver.errors import ParameterServerError, StreamReason


def stream_error(exc: StreamError) -> ParameterServerError:
    """A broken stream contract as the ParameterServer's error."""
    return ParameterServerError(exc.kind, exc.message, reason=exc.reason)


# NOTE: the hash and the look for NaN/Inf take turns on slices this big, so that the look finds
# the slice in the core's cache (1 MiB of L2 a core on the machine measured).
WATCH_SLICE_BYTES = 256 * 1024


class FiniteWatch:
    """A push's running hash that also looks for NaN/Inf among the values going by.

    Fed the payload's bytes in order (as the :class:`~tendril.core.streaming.Receiver` hashes
    them, on its pool thread), slice by slice: each slice is hashed, then its fp32 values (bf16
    bits) are looked at while they are in cache, so that a push received whole is known to be
    finite without another pass over it before its fold. Only payloads whose tensors fill the
    data section end to end are watched (:func:`watchable`).
    """

    def __init__(self, digest: Hash, layout: Layout) -> None:
        self._digest = digest
        self._wire = codecs.BY_NAME[layout.codec]
        self._width = np.dtype(self._wire.array_dtype).itemsize
        self._begin, self._end = layout.header_size, layout.total_bytes
        self._at = 0  # bytes fed so far
        self._carry = bytearray()  # the start of a value cut by the end of a slice
        self.finite = True  # no NaN/Inf among the values fed so far

    def update(self, data: bytes | memoryview, /) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), WATCH_SLICE_BYTES):
            piece = view[start : start + WATCH_SLICE_BYTES]
            self._digest.update(piece)
            self._look(piece)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def _look(self, piece: memoryview) -> None:
        at = self._at
        self._at += len(piece)
        lo, hi = max(at, self._begin), min(self._at, self._end)
        if hi <= lo or not self.finite:
            return
        part = piece[lo - at : hi - at]
        if self._carry:
            need = self._width - len(self._carry)
            self._carry += part[:need]
            part = part[need:]
            if len(self._carry) < self._width:
                return
            self._check(memoryview(bytes(self._carry)))
            self._carry.clear()
        whole = len(part) - len(part) % self._width
        if whole:
            self._check(part[:whole])
        self._carry += part[whole:]

    def _check(self, raw: memoryview) -> None:
        ok = codecs.encoded_all_finite(self._wire, np.frombuffer(raw, dtype=self._wire.array_dtype))
        self.finite = self.finite and ok


def watchable(layout: Layout) -> bool:
    """Whether :class:`FiniteWatch` can look at a payload of ``layout``: of a codec whose values
    stand alone (not blockwise: fp32, bf16), its tensors one after another from the start of the
    data section to its end."""
    wire = codecs.BY_NAME.get(layout.codec)
    if wire is None or wire.blockwise or wire.flat:
        return False
    at = 0
    for spec in sorted(layout.tensors, key=lambda t: t.begin):
        if spec.begin != at:
            return False
        at = spec.end
    return at == layout.data_size


# NOTE: a push received behind a fold takes pieces of at least this much (the data port asks for
# 16 MiB at a time: the fold had to free that much before the first byte could land).
GATED_PIECE_BYTES = 1024 * 1024


class Handover:
    """A staging buffer passed on from a push being folded to the next push: which of its bytes are free.

    The fold frees byte ranges as it adds them to the sum (:meth:`free`, on its threads); the
    push's end frees all of it (:meth:`free_all`, whatever ended it). The next push awaits
    :meth:`wait` before it writes bytes [offset, end).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._freed = Held()  # ranges freed beyond the prefix
        self._prefix = 0  # bytes [0, prefix) are free
        self._all = False
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def free(self, start: int, end: int) -> None:
        with self._lock:
            self._freed.add(start, end)
            self._prefix = self._freed.advance(self._prefix)
            self._wake()

    def free_all(self) -> None:
        with self._lock:
            self._all = True
            self._wake()

    def _free_upto(self, end: int) -> bool:
        return self._all or end <= self._prefix

    def room(self, offset: int, length: int) -> int:
        """How many of ``length`` bytes from ``offset`` to take at once: those free now, else at least
        GATED_PIECE_BYTES (a piece :meth:`wait` then waits for): a transport receives behind the
        fold in small pieces instead of waiting for one as big as it asked."""
        with self._lock:
            if self._free_upto(offset + length):
                return length
            return min(length, max(self._prefix - offset, GATED_PIECE_BYTES))

    def _wake(self) -> None:
        keep = []
        for end, loop, future in self._waiters:
            if self._free_upto(end):
                with contextlib.suppress(RuntimeError):  # (its loop is closed: nobody waits)
                    loop.call_soon_threadsafe(_resolve, future)
            else:
                keep.append((end, loop, future))
        self._waiters = keep

    async def wait(self, end: int) -> None:
        """Return once bytes [0, end) are free (NOTE: the prefix only: a push's bytes arrive in order,
        and the fold frees them in order on each of its threads)."""
        with self._lock:
            if self._free_upto(end):
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((end, loop, future))
        await future


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Staging:
    """The Receiver's destination: the staging buffer (bytes that land in place are not copied)."""

    def __init__(self, buffer: memoryview) -> None:
        self.buffer: memoryview | None = buffer

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.buffer is None:
            raise StreamError(StreamReason.INCOMPLETE, "the push was dropped while it was being received")
        self.buffer[offset : offset + len(data)] = data

    def view(self, offset: int, length: int) -> memoryview | None:
        return None if self.buffer is None else self.buffer[offset : offset + length]

    def close(self) -> None:
        self.buffer = None


class Spool:
    """A push's staging buffer, its receiver and the call that currently feeds it."""

    def __init__(
        self,
        info: StreamInfo,
        buffer: memoryview,
        on_done: Callable[[], None],
        *,
        key: tuple[str, ...] = (),
        table: dict[str, Spool] | None = None,
        release_pages: Callable[[memoryview, int, int], None] | None = None,
        gate: Handover | None = None,
    ) -> None:
        self.info = info
        self.gate = gate  # set when the buffer was handed on from a push being folded (see Handover)
        self.successor: Handover | None = None  # set once this push's buffer was handed on
        self.release_pages = release_pages  # (buffer, start, end): give those pages back to the kernel
        self.key = key  # its name in the memory budget
        self.table = table  # the server's table of pushes it is listed in
        self._buffer: memoryview | None = buffer
        self._dest = _Staging(buffer)
        self.watch = FiniteWatch(new_hash(info.digest.algorithm), info.layout) if watchable(info.layout) else None
        self.receiver = Receiver(info, self._dest, digest=self.watch)
        self.held = Held()  # ranges received beyond ``received`` (ranged data connections)
        self.owner: asyncio.Task[object] | None = None
        self.stale: ParameterServerError | None = None  # set when it can no longer count
        self.finishing = False  # received whole: being verified and folded (memory back soon)
        self.finishing_order = 0  # when it began committing (the server's count)
        self._on_done: Callable[[], None] | None = on_done

    @property
    def received(self) -> int:
        return self.receiver.received

    @property
    def complete(self) -> bool:
        return self.receiver.complete

    @property
    def nbytes(self) -> int:
        return self.info.total_bytes

    @property
    def finite(self) -> bool | None:
        """True when every value was seen finite as the push arrived whole, False when one was
        not, None when its values were not looked at on the way (another codec) or it is not whole."""
        if self.watch is None or not self.complete:
            return None
        return self.watch.finite

    def same_payload(self, info: StreamInfo) -> bool:
        mine = self.info
        return (mine.digest, mine.total_bytes, mine.worker_id, mine.round, mine.run_id) == (
            info.digest,
            info.total_bytes,
            info.worker_id,
            info.round,
            info.run_id,
        )

    async def take_over(self) -> None:
        """A retry of this stream arrived: stop the call that fed it before (a dead connection)."""
        owner, current = self.owner, asyncio.current_task()
        if owner is not None and owner is not current and not owner.done():
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(owner), timeout=5.0)
        self.owner = current
        await self.receiver.settle()

    # -- fed by the transport ---------------------------------------------------------------------------

    async def writable(self, offset: int, end: int) -> None:
        """Return once payload bytes [offset, end) may be put in place (at once unless the buffer was
        handed on from a push still being folded)."""
        if self.gate is not None:
            await self.gate.wait(end)

    async def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.stale is not None:
            raise self.stale
        await self.writable(offset, offset + len(data))
        try:
            await self.receiver.feed_async(offset, data)
        except StreamError as exc:
            raise stream_error(exc) from exc

    def view(self, offset: int, length: int) -> memoryview | None:
        """Where payload bytes [offset, offset+length) go, when offset is the resume point; else None
        (fewer bytes than asked while the buffer is still being folded from: see Handover.room)."""
        return self._place(offset, length) if offset == self.received else None

    def range_view(self, offset: int, length: int) -> memoryview | None:
        """Where payload bytes [offset, offset+length) go, anywhere past the resume point; else None
        (fewer bytes than asked while the buffer is still being folded from: see Handover.room)."""
        return self._place(offset, length) if offset >= self.received else None

    def _place(self, offset: int, length: int) -> memoryview | None:
        buffer = self._buffer
        if buffer is None or self.stale is not None or length <= 0 or offset + length > self.info.total_bytes:
            return None
        if self.gate is not None:
            length = self.gate.room(offset, length)
        return buffer[offset : offset + length]

    def landed(self, offset: int, n: int) -> None:
        """``n`` bytes were received into ``view(offset, ...)``: hash and count them (never copied)."""
        if self.stale is not None:
            raise self.stale
        if self._buffer is None:
            raise stream_error(StreamError(StreamReason.INCOMPLETE, "the push was dropped while it was being received"))
        try:
            self.receiver.landed(offset, n)
        except StreamError as exc:
            raise stream_error(exc) from exc

    # -- the parameter server's side -----------------------------------------------------------------------

    async def finish(self) -> Layout:
        """Verify the whole payload (size, digest, its own header); the payload's layout."""
        if self.stale is not None:
            raise self.stale
        try:
            await self.receiver.settle()
            self.receiver.verify()
            return _check_payload_header(self.payload(), self.info)
        except StreamError as exc:
            raise stream_error(exc) from exc

    def payload(self) -> memoryview:
        """The staged payload (read-only view)."""
        if self._buffer is None:
            raise stream_error(StreamError(StreamReason.INCOMPLETE, "the push was dropped before it was verified"))
        return self._buffer.toreadonly()

    def give_back(self, start: int, end: int) -> None:
        """Payload bytes [start, end) are no longer needed (folded): the push its buffer was handed
        on to may write there, else their pages may go back to the kernel.

        Only once the push is committing (it is never read again); pages go back only while
        ``release_pages`` is given (the server passes it while its budget holds more than its
        limit: pushes were admitted on the promise of these pages); the buffer stays valid.
        """
        buffer = self._buffer
        if buffer is None or not self.finishing:
            return
        if self.successor is not None:
            self.successor.free(start, end)
        elif self.release_pages is not None:
            self.release_pages(buffer, start, end)

    def hand_over(self, nbytes: int) -> tuple[memoryview, Handover]:
        """This push's buffer (its first ``nbytes``) for the next push, and the gate that says which
        of its bytes this push no longer needs. Only while it is committing, once."""
        buffer = self._buffer
        if buffer is None or not self.finishing or self.successor is not None or len(buffer) < nbytes:
            raise ValueError("only a committing push's buffer can be handed on, once")
        self.successor = Handover()
        return buffer[:nbytes], self.successor

    def discard(self) -> None:
        """Drop it: nothing of it is kept (its memory goes back once no view of it is left)."""
        self._buffer = None
        self._dest.close()
        if self.successor is not None:
            self.successor.free_all()
        self.owner = None  # (a task whose result is this spool would otherwise keep it alive)
        if self._on_done is not None:
            done, self._on_done = self._on_done, None
            done()


def _check_payload_header(view: memoryview, info: StreamInfo) -> Layout:
    """The layout a received payload declares, checked against its stream header."""
    try:
        layout = payload_layout(view)
    except TensorFileError as exc:
        raise StreamError(StreamReason.BAD_PAYLOAD, f"the payload is not a SafeTensors file: {exc}") from exc
    if not same_tensors(layout, info.layout):
        raise StreamError(
            StreamReason.BAD_PAYLOAD, "the payload's own SafeTensors header disagrees with the stream header"
        )
    return layout
