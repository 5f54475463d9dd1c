"""Tensor stream primitives without gRPC: headers, lazily cut chunks, resumable receivers.

A tensor stream is one ``StreamHeader`` then ordered ``Chunk``s of the payload (a SafeTensors
file, see :mod:`tendril.core.tensorfile`), or the payload's bytes over a data connection (see
:mod:`tendril.core.dataplane`). Senders cut chunks lazily from one memoryview of the payload
(an mmap of the file); receivers write each chunk at its offset into a preallocated
destination (or find bytes already landed in it) and hash it on the way, so the digest of the
whole payload is known when the last byte lands. Offsets are Python ints carried in uint64
fields: payloads far above 2 GiB are fine.

# NOTE: the digest is XXH3-128 (:data:`DEFAULT_DIGEST`) unless a sender names sha256. It guards
# against accidental damage (a bug, bad memory, a bad disk, a wrong resume offset); tampering in
# transit is what TLS is for (mTLS covers the call and the data connection alike), and a
# plaintext link lets anyone on the path rewrite the header's digest along with the bytes, so a
# cryptographic hash would buy nothing there. XXH3-128 hashes at about 27 GB/s on this class of
# machine, sha256 at 0.84 GB/s and BLAKE3 at 2.5-3.9 GB/s: only XXH3 leaves a 2-core receiver
# the CPU to move several GB/s.

# NOTE: every stream message of the protos (PushUpdateRequest, PushParametersRequest,
# PullUpdateResponse, PullParametersResponse) is ``StreamMessage message = 1`` (+ a varint in
# one of them). Chunk messages are encoded and parsed here directly on the wire instead of
# through protobuf objects: protobuf ``bytes`` fields refuse memoryviews, so going through
# messages costs two extra copies of every MiB on each side. A frame is built with one copy
# straight from the mmap, and parsed into a zero-copy memoryview of the received bytes. The
# bytes on the wire are exactly what protobuf would write, so any client (grpcurl, other
# languages, the generated stubs) interoperates.

The parameter server and the client functions of :mod:`tendril.core.tensorstream`
are both built from these pieces.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import mmap
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import xxhash

from tendril.core import codecs, tensorfile
from tendril.core.errors import ErrorKind
from tendril.core.ids import STREAM_ID
from tendril.core.server import CHUNK_BYTES
from tendril.core.tensorfile import Layout, TensorFileError, TensorSpec
from tendril_proto.tensor.v1 import tensor_pb2
from tendril_sdk.reasons import StreamReason

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# -- digests ----------------------------------------------------------------------------------------

SHA256 = "sha256"
XXH3_128 = "xxh3-128"
DEFAULT_DIGEST = XXH3_128


class Hash(Protocol):
    """A running hash (hashlib's and xxhash's objects)."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class _Algorithm:
    proto: int
    pattern: re.Pattern[str]
    new: Callable[[], Hash]


ALGORITHMS: dict[str, _Algorithm] = {
    SHA256: _Algorithm(tensor_pb2.DIGEST_ALGORITHM_SHA256, _SHA256, hashlib.sha256),
    XXH3_128: _Algorithm(tensor_pb2.DIGEST_ALGORITHM_XXH3_128, re.compile(r"^[0-9a-f]{32}$"), xxhash.xxh3_128),
}
_BY_PROTO = {a.proto: name for name, a in ALGORITHMS.items()}


class Digest(NamedTuple):
    """A payload's digest: the algorithm's name (:data:`ALGORITHMS`) and the lowercase hex."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def new_hash(algorithm: str = DEFAULT_DIGEST) -> Hash:
    """An empty running hash of ``algorithm``."""
    return ALGORITHMS[algorithm].new()


def digest_file(path: str | os.PathLike[str], algorithm: str = DEFAULT_DIGEST, *, upto: int | None = None) -> Hash:
    """A running hash of ``algorithm`` fed with the first ``upto`` bytes of ``path`` (all of it when None)."""
    hasher = new_hash(algorithm)
    remaining = os.path.getsize(path) if upto is None else upto
    buffer = memoryview(bytearray(8 * 1024 * 1024))
    with open(path, "rb", buffering=0) as f:
        while remaining > 0:
            got = f.readinto(buffer[: min(len(buffer), remaining)])
            if not got:
                raise TensorFileError(f"{path} ended {remaining} bytes early")
            hasher.update(buffer[:got])
            remaining -= got
    return hasher


# NOTE: a receiver of a pushed stream sends this initial metadata once it has accepted the
# header (and the offset), and the sender sends no chunk before it arrives. A receiver that
# rejects the header ends the call while the sender is idle: with grpc.aio a client write
# that fails because the server already ended the call replaces the server's status with
# INTERNAL "Internal error from Core" (grpc/grpc#36066), so a push to a closed run could
# read as an internal error instead of RUN_CLOSED. One round trip per push buys that.
STREAM_ACCEPTED_KEY = "tendril-stream"
STREAM_ACCEPTED: tuple[tuple[str, str], ...] = ((STREAM_ACCEPTED_KEY, "accepted"),)


def stream_accepted(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """True when a push's initial metadata ((key, value) pairs) says the header was accepted."""
    return metadata is not None and any((key, value) == STREAM_ACCEPTED[0] for key, value in metadata)


class StreamError(ValueError):
    """A stream broke its contract; ``reason`` says which rule (:class:`StreamReason`)."""

    def __init__(self, reason: StreamReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def kind(self) -> ErrorKind:
        """The status a receiver answers this with: damage is DATA_LOSS, a cut UNAVAILABLE."""
        if self.reason in (StreamReason.SHA256_MISMATCH, StreamReason.DIGEST_MISMATCH):
            return ErrorKind.DATA_LOSS
        if self.reason == StreamReason.DATA_CONNECTION_LOST:
            return ErrorKind.UNAVAILABLE
        return ErrorKind.INVALID_ARGUMENT


def codec_from_proto(value: int) -> str:
    """Codec name of a proto enum value; unspecified means fp32."""
    try:
        return codecs.from_proto(value).name
    except codecs.CodecError as exc:
        raise StreamError(StreamReason.BAD_CODEC, str(exc)) from exc


def codec_to_proto(codec: str) -> tensor_pb2.Codec:
    try:
        return codecs.get(codec).proto
    except codecs.CodecError as exc:
        raise StreamError(StreamReason.BAD_CODEC, str(exc)) from exc


def run_id_of(message: Any) -> str:
    """The DiLoCo run a stream header or a ParameterServer request names.

    NOTE: the one place that reads ``job_id``, the field's old name (deprecated in the protos:
    "read when run_id is empty"), so that clients written against it keep working.
    """
    return str(message.run_id or message.job_id)


@dataclasses.dataclass(frozen=True)
class StreamInfo:
    """What a stream header says."""

    stream_id: str
    run_id: str
    round: int
    worker_id: str
    weight: float
    layout: Layout
    digest: Digest
    start_offset: int = 0

    @property
    def total_bytes(self) -> int:
        return self.layout.total_bytes


def header_message(info: StreamInfo) -> tensor_pb2.StreamHeader:
    layout = info.layout
    if layout.codec not in codecs.BY_NAME:
        raise StreamError(
            StreamReason.BAD_CODEC, f"a {layout.codec} payload cannot be streamed; encode it as one of {codecs.NAMES}"
        )
    if info.digest.algorithm not in ALGORITHMS:
        raise StreamError(StreamReason.BAD_HEADER, f"unknown digest algorithm {info.digest.algorithm!r}")
    return tensor_pb2.StreamHeader(
        stream_id=info.stream_id,
        run_id=info.run_id,
        round=info.round,
        worker_id=info.worker_id,
        weight=info.weight,
        codec=codecs.BY_NAME[layout.codec].proto,
        tensors=[
            tensor_pb2.TensorInfo(
                name=t.name,
                dtype=t.dtype,
                shape=list(t.shape),
                begin=t.begin,
                end=t.end,
                scales_begin=t.scales_begin,
                scales_end=t.scales_end,
            )
            for t in layout.tensors
        ],
        total_bytes=layout.total_bytes,
        # NOTE: a sha256 digest also fills the old field, which receivers older than
        # ``digest`` read; an XXH3 one leaves it empty.
        sha256=info.digest.hex if info.digest.algorithm == SHA256 else "",
        digest=tensor_pb2.Digest(algorithm=ALGORITHMS[info.digest.algorithm].proto, hex=info.digest.hex),
        block_size=layout.block_size,
        start_offset=info.start_offset,
    )


def _digest_of(header: tensor_pb2.StreamHeader) -> Digest:
    """The digest a header promises: ``digest`` when set, else the old ``sha256`` field."""
    if header.sha256 and not _SHA256.match(header.sha256):
        raise StreamError(StreamReason.BAD_HEADER, "sha256 must be the 64 lowercase hex digits of the payload's sha256")
    if header.HasField("digest") and header.digest.algorithm:
        name = _BY_PROTO.get(header.digest.algorithm)
        if name is None:
            raise StreamError(
                StreamReason.BAD_HEADER,
                f"digest algorithm {header.digest.algorithm} is not known; use one of {', '.join(ALGORITHMS)}",
            )
        if not ALGORITHMS[name].pattern.match(header.digest.hex):
            raise StreamError(StreamReason.BAD_HEADER, f"the {name} digest must be its lowercase hex digits")
        if name == SHA256 and header.sha256 and header.sha256 != header.digest.hex:
            raise StreamError(StreamReason.BAD_HEADER, "sha256 and the sha256 digest disagree; send one of them")
        return Digest(name, header.digest.hex)
    if not _SHA256.match(header.sha256):
        raise StreamError(StreamReason.BAD_HEADER, "sha256 must be the 64 lowercase hex digits of the payload's sha256")
    return Digest(SHA256, header.sha256)


def digest_from_proto(message: tensor_pb2.Digest) -> Digest:
    """The digest a Digest message names; ValueError (saying what to fix) when it is not a valid one."""
    name = _BY_PROTO.get(message.algorithm)
    if name is None:
        raise ValueError(f"digest algorithm {message.algorithm} is not known; use one of {', '.join(ALGORITHMS)}")
    if not ALGORITHMS[name].pattern.match(message.hex):
        raise ValueError(f"the {name} digest must be its lowercase hex digits, got {message.hex[:80]!r}")
    return Digest(name, message.hex)


def info_from_header(header: tensor_pb2.StreamHeader) -> StreamInfo:
    """Validate a received header; raises StreamError(BAD_HEADER) saying what is wrong."""
    codec = codec_from_proto(header.codec)
    wire = codecs.BY_NAME[codec]
    if (problem := STREAM_ID.problem(header.stream_id, "stream_id")) is not None:
        raise StreamError(StreamReason.BAD_HEADER, f"{problem} (reuse it when resuming)")
    digest = _digest_of(header)
    if not header.tensors:
        raise StreamError(StreamReason.BAD_HEADER, "the header lists no tensors")
    block_size = header.block_size if wire.blockwise else 0
    if wire.blockwise:
        try:
            wire.check_block_size(block_size)
        except codecs.CodecError as exc:
            raise StreamError(
                StreamReason.BAD_HEADER, f"{codec} streams need block_size in 1..{codecs.MAX_BLOCK_SIZE}: {exc}"
            ) from exc
    want_dtype = wire.wire_dtype
    specs = []
    ranges = []
    names = set()
    for t in header.tensors:
        if not t.name or t.name in names:
            raise StreamError(StreamReason.BAD_HEADER, f"tensor name {t.name!r} is empty or repeated")
        names.add(t.name)
        if t.dtype != want_dtype:
            raise StreamError(
                StreamReason.BAD_HEADER, f"tensor {t.name!r} is {t.dtype} but a {codec} stream carries {want_dtype}"
            )
        spec = TensorSpec(t.name, t.dtype, tuple(t.shape), t.begin, t.end, t.scales_begin, t.scales_end)
        if spec.end - spec.begin != wire.tensor_bytes(spec.numel, block_size) or spec.begin > spec.end:
            raise StreamError(
                StreamReason.BAD_HEADER,
                f"tensor {t.name!r}: bytes {t.begin}..{t.end} do not hold shape {list(spec.shape)}",
            )
        ranges.append((spec.begin, spec.end, t.name))
        if wire.blockwise:
            count = wire.scale_count(spec.numel, block_size)
            if spec.scales_end - spec.scales_begin != 4 * count:
                raise StreamError(StreamReason.BAD_HEADER, f"tensor {t.name!r}: its scales must be {count} fp32 values")
            ranges.append((spec.scales_begin, spec.scales_end, t.name + tensorfile.SCALES_SUFFIX))
        specs.append(spec)
    cursor = 0
    for begin, end, name in sorted(ranges):
        if begin != cursor:
            raise StreamError(StreamReason.BAD_HEADER, f"{name!r} starts at data byte {begin}, expected {cursor}")
        cursor = end
    header_size = header.total_bytes - cursor
    if header_size < 8 or header_size > tensorfile.MAX_HEADER_BYTES + 8:
        raise StreamError(
            StreamReason.BAD_HEADER, f"total_bytes {header.total_bytes} does not fit the tensors' {cursor} bytes"
        )
    if header.start_offset > header.total_bytes:
        raise StreamError(StreamReason.BAD_HEADER, f"start_offset {header.start_offset} is past the payload's end")
    specs.sort(key=lambda s: s.begin)
    layout = Layout(tuple(specs), codec, block_size, header_size, cursor)
    return StreamInfo(
        stream_id=header.stream_id,
        run_id=run_id_of(header),
        round=header.round,
        worker_id=header.worker_id,
        weight=header.weight,
        layout=layout,
        digest=digest,
        start_offset=header.start_offset,
    )


def same_tensors(a: Layout, b: Layout) -> bool:
    """True when two layouts place the same tensors at the same bytes with the same codec."""
    return (
        a.codec == b.codec
        and a.block_size == b.block_size
        and a.header_size == b.header_size
        and sorted(a.tensors, key=lambda t: t.name) == sorted(b.tensors, key=lambda t: t.name)
    )


# -- frames: stream messages on the wire ----------------------------------------------------------------

_LEN = 2  # wire type of length-delimited fields
_VARINT = 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise StreamError(StreamReason.BAD_FRAME, "truncated or overlong varint in a stream message")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of a protobuf message; LEN values are zero-copy views."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise StreamError(StreamReason.BAD_FRAME, "a field runs past the end of its stream message")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire in (1, 5):  # fixed64 / fixed32: not used by these messages, skipped
            pos += 8 if wire == 1 else 4
        else:
            raise StreamError(StreamReason.BAD_FRAME, f"unsupported wire type {wire} in a stream message")


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def chunk_frame(view: memoryview, offset: int, length: int) -> bytes:
    """Wire bytes of ``{message: {chunk: {offset, data: view[offset:offset+length]}}}`` (one copy)."""
    # proto3 leaves a zero offset out, and so does this (byte-for-byte what protobuf writes).
    chunk_head = (_field(1, _VARINT) + _varint(offset) if offset else b"") + _field(2, _LEN) + _varint(length)
    chunk_size = len(chunk_head) + length
    stream_head = _field(2, _LEN) + _varint(chunk_size)
    head = _field(1, _LEN) + _varint(len(stream_head) + chunk_size) + stream_head + chunk_head
    return b"".join((head, view[offset : offset + length]))


def header_frame(header: tensor_pb2.StreamHeader, *, contributors: int = 0) -> bytes:
    """Wire bytes of ``{message: {header}}`` (+ field 2 = contributors, as PullUpdateResponse has)."""
    body = tensor_pb2.StreamMessage(header=header).SerializeToString()
    frame = _field(1, _LEN) + _varint(len(body)) + body
    return frame + _field(2, _VARINT) + _varint(contributors) if contributors else frame


def chunk_ranges(total: int, start: int = 0, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """(offset, length) of the chunks of a ``total``-byte payload from ``start``."""
    for offset in range(start, total, chunk_bytes):
        yield offset, min(chunk_bytes, total - offset)


def iter_frames(view: memoryview, start: int = 0, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Chunk frames of ``view`` from ``start``, cut lazily: only the frame being yielded exists."""
    for offset, length in chunk_ranges(len(view), start, chunk_bytes):
        yield chunk_frame(view, offset, length)


DROP_BEHIND_BYTES = 16 * CHUNK_BYTES


def file_frames(path: str | os.PathLike[str], start: int = 0, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Chunk frames of a file from ``start``, cut from one mmap of it.

    # NOTE: pages already sent are dropped from this process's mapping every 16 MiB
    # (MADV_DONTNEED; they stay in the page cache), so a server streaming one model to many
    # workers at once holds a few MiB of it per stream in its RSS, not the whole model.
    """
    with mapping(path) as (mm, view):
        dropped = start - start % mmap.PAGESIZE
        for offset, length in chunk_ranges(len(view), start, chunk_bytes):
            yield chunk_frame(view, offset, length)
            end = offset + length
            if mm is not None and end - dropped >= DROP_BEHIND_BYTES:
                upto = end - end % mmap.PAGESIZE
                with contextlib.suppress(AttributeError, OSError):
                    mm.madvise(mmap.MADV_DONTNEED, dropped, upto - dropped)
                dropped = upto


@dataclasses.dataclass(frozen=True)
class Frame:
    """A parsed stream message: a header, or a chunk (offset + zero-copy data)."""

    header: tensor_pb2.StreamHeader | None = None
    offset: int = 0
    data: memoryview | None = None
    contributors: int = 0

    @property
    def is_chunk(self) -> bool:
        return self.data is not None


def parse_frame(raw: bytes) -> Frame:
    """Parse any of the four stream message types from its wire bytes (the gRPC deserializer)."""
    header = None
    offset, data, contributors = 0, None, 0
    for number, wire, value in _fields(memoryview(raw)):
        if number == 2 and wire == _VARINT:
            contributors = int(value)  # type: ignore[arg-type]
        elif number == 1 and wire == _LEN:
            for inner_number, inner_wire, inner in _fields(value):  # type: ignore[arg-type]
                if inner_number == 1 and inner_wire == _LEN:
                    header = tensor_pb2.StreamHeader.FromString(bytes(inner))  # type: ignore[arg-type]
                elif inner_number == 2 and inner_wire == _LEN:
                    data = memoryview(b"")
                    for chunk_number, chunk_wire, chunk_value in _fields(inner):  # type: ignore[arg-type]
                        if chunk_number == 1 and chunk_wire == _VARINT:
                            offset = int(chunk_value)  # type: ignore[arg-type]
                        elif chunk_number == 2 and chunk_wire == _LEN:
                            data = chunk_value  # type: ignore[assignment]
    return Frame(header, offset, data, contributors)


@contextlib.contextmanager
def mapping(path: str | os.PathLike[str]) -> Iterator[tuple[mmap.mmap | None, memoryview]]:
    """(mmap, read-only memoryview) of a whole file, released when the block ends."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            yield None, memoryview(b"")
            return
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        # Sequential reads: ask the kernel to read ahead aggressively.
        with contextlib.suppress(AttributeError, OSError):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(mm)
        try:
            yield mm, view
        finally:
            view.release()
            # A slice still referenced (say, by a traceback) keeps the map alive; the GC closes it then.
            with contextlib.suppress(BufferError):
                mm.close()


@contextlib.contextmanager
def mapped(path: str | os.PathLike[str]) -> Iterator[memoryview]:
    """A read-only memoryview of a whole file (mmap), released when the block ends."""
    with mapping(path) as (_, view):
        yield view


# -- receiving -----------------------------------------------------------------------------------


class Destination(Protocol):
    """Where received chunks land.

    A destination in memory may also offer ``view(offset, length) -> memoryview | None``: the
    writable place of payload bytes [offset, offset + length), which a data connection
    receives into directly (:meth:`Receiver.landed`).
    """

    def write(self, offset: int, data: bytes | memoryview) -> None: ...

    def close(self) -> None: ...


class FileDestination:
    """A file written chunk by chunk with pwrite; preallocated (blocks reserved) when asked."""

    def __init__(self, path: str | os.PathLike[str], size: int, *, preallocate: bool = True, keep: bool = False):
        self.path = Path(path)
        flags = os.O_RDWR | os.O_CREAT | (0 if keep else os.O_TRUNC)
        self.fd = os.open(self.path, flags, 0o600)
        if preallocate and size:
            try:
                os.posix_fallocate(self.fd, 0, size)
            except OSError:
                os.ftruncate(self.fd, size)  # file systems without fallocate: a sparse file will do

    def write(self, offset: int, data: bytes | memoryview) -> None:
        tensorfile.pwrite_all(self.fd, data, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BufferDestination:
    """A preallocated, already touched buffer (bytearray, numpy array, mmap...)."""

    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer.cast("B") if buffer.format != "B" else buffer

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self.buffer[offset : offset + len(data)] = data

    def view(self, offset: int, length: int) -> memoryview:
        """Where payload bytes [offset, offset + length) belong (received into directly)."""
        return self.buffer[offset : offset + length]

    def close(self) -> None:
        return None


# Digests run here, off the event loop (hashlib and xxhash release the GIL on large buffers).
_HASHERS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="digest")
# A receiver waits for its hasher when more than this is queued, until half of it is done:
# bounded memory per stream (about 5 MiB of chunks), few wake-ups of the event loop.
HASH_BACKLOG_BYTES = 4 * CHUNK_BYTES
# Bytes one drain job hashes before yielding its pool thread to other streams' hashers.
HASH_TURN_BYTES = 16 * CHUNK_BYTES


def _submit(job: Callable[[], None]) -> bool:
    """Queue ``job`` on the hasher pool; False once the pool is shut down (interpreter exit)."""
    try:
        _HASHERS.submit(job)
    except RuntimeError:
        return False
    return True


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Hasher:
    """Feeds a digest on a pool thread, in order, with the chunks the event loop queues.

    # NOTE: the loop only appends to a queue; a drain job hashes until the queue is empty, and
    # the loop is woken only when it waits (backlog full, or settling). Handing each chunk to
    # the pool as its own future left the hasher idle between chunks while the loop woke up
    # and handed over the next one: fed 1 GiB in process (no network, a second core free), a
    # receiver took 0.84-0.91 s and 0.82-0.92 CPU s that way, 0.63 s (the sha256's own time)
    # and 0.70-0.80 CPU s this way.
    """

    def __init__(self, digest: Hash) -> None:
        self.digest = digest
        self._lock = threading.Lock()
        self._queue: collections.deque[bytes | memoryview] = collections.deque()  # head: being hashed
        self.queued_bytes = 0
        self._draining = False
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int]] = []

    @property
    def idle(self) -> bool:
        """Every chunk queued so far is in the digest."""
        return not self._queue

    def put(self, data: bytes | memoryview) -> None:
        with self._lock:
            self.check()
            self._queue.append(data)
            self.queued_bytes += len(data)
            if self._draining:
                return
            self._draining = True
            if not _submit(self._drain):
                self._draining = False
                raise RuntimeError("the digest pool is shut down (the process is exiting)")

    async def wait_until(self, queued_bytes: int) -> None:
        """Wait until no more than ``queued_bytes`` are left to hash (0: all done)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self.check()
            if self.queued_bytes <= queued_bytes:
                return
            waiter = loop.create_future()
            self._waiters.append((loop, waiter, queued_bytes))
        await waiter
        self.check()

    def _drain(self) -> None:
        done = 0
        while True:
            with self._lock:
                if not self._queue:
                    self._draining = False
                    self._wake()
                    return
                if done >= HASH_TURN_BYTES and _submit(self._drain):
                    return  # back of the line: other streams' hashers run meanwhile
                data = self._queue[0]
            try:
                self.digest.update(data)
            except BaseException as exc:  # nothing can be hashed after a failure: fail every waiter
                with self._lock:
                    self._error = exc
                    self._queue.clear()
                    self.queued_bytes = 0
                    self._draining = False
                    self._wake()
                return
            done += len(data)
            with self._lock:
                self._queue.popleft()
                self.queued_bytes -= len(data)
                if self._waiters:
                    self._wake()

    def _wake(self) -> None:
        """Resolve the waiters that may go on (called with the lock held)."""
        waiting = []
        for loop, waiter, queued_bytes in self._waiters:
            if self._error is None and self.queued_bytes > queued_bytes:
                waiting.append((loop, waiter, queued_bytes))
                continue
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, waiter)
        self._waiters = waiting

    def check(self) -> None:
        """Raise when hashing failed (the digest misses chunks)."""
        if self._error is not None:
            raise RuntimeError("hashing the stream failed") from self._error


class Receiver:
    """Takes a stream's bytes in order into ``dest`` and hashes them on the way.

    ``received`` (with ``digest`` fed the same bytes) lets a receiver resume a cut stream:
    the next bytes must start exactly there. :meth:`feed_async` hashes on a pool thread, in
    order, while the event loop receives the next chunks (call :meth:`settle` before verifying
    or reading ``digest``); the chunks it takes must not change until then. A data connection
    receives straight into the destination's :meth:`view` and reports with :meth:`landed`.
    The digest is the header's algorithm (:attr:`StreamInfo.digest`).
    """

    def __init__(
        self,
        info: StreamInfo,
        dest: Destination,
        *,
        received: int = 0,
        digest: Hash | None = None,
    ) -> None:
        if received and digest is None:
            raise ValueError("resuming needs the digest of the bytes already received")
        self.info = info
        self.dest = dest
        self.received = received
        self.digest = digest or new_hash(info.digest.algorithm)
        self._hasher = _Hasher(self.digest)

    @property
    def total(self) -> int:
        return self.info.total_bytes

    @property
    def complete(self) -> bool:
        return self.received == self.total

    def feed(self, offset: int, data: bytes | memoryview) -> None:
        """Take the next chunk (write it, hash it here)."""
        if not self._hasher.idle:
            raise RuntimeError("chunks are still being hashed: await settle() first")
        self._check(offset, len(data))
        self.dest.write(offset, data)
        self.received += len(data)
        self.digest.update(data)

    async def feed_async(self, offset: int, data: bytes | memoryview) -> None:
        """Take the next chunk; it is hashed on a pool thread, at most HASH_BACKLOG_BYTES behind."""
        self._check(offset, len(data))
        self.dest.write(offset, data)
        self.received += len(data)
        self._hasher.put(data)
        if self._hasher.queued_bytes > HASH_BACKLOG_BYTES:
            await self._hasher.wait_until(HASH_BACKLOG_BYTES // 2)

    async def write(self, offset: int, data: bytes | memoryview) -> None:
        """:meth:`feed_async` under the name a push target has (:class:`tendril.core.dataplane.PushTarget`)."""
        await self.feed_async(offset, data)

    def view(self, offset: int, length: int) -> memoryview | None:
        """Where payload bytes [offset, offset + length) belong in the destination; None when it offers no view."""
        view = getattr(self.dest, "view", None)
        return None if view is None else view(offset, length)

    def landed(self, offset: int, length: int) -> None:
        """``length`` bytes were received into :meth:`view` at ``offset``: count them, hash them on a pool thread.

        # NOTE: the bytes stay where they landed (the destination's own memory), so the hasher
        # needs no backlog bound here: nothing is copied or held beyond the destination.
        """
        self._check(offset, length)
        data = self.dest.view(offset, length)  # type: ignore[attr-defined]
        self.received += length
        self._hasher.put(data)

    async def settle(self) -> None:
        """Wait until every chunk taken is hashed."""
        await self._hasher.wait_until(0)

    def _check(self, offset: int, length: int) -> None:
        if offset != self.received:
            raise StreamError(
                StreamReason.OUT_OF_ORDER,
                f"chunk at offset {offset} but {self.received} bytes were received; resume from there",
            )
        if not length:
            raise StreamError(StreamReason.EMPTY_CHUNK, f"empty chunk at offset {offset}")
        if self.received + length > self.total:
            raise StreamError(
                StreamReason.TOO_LONG,
                f"chunk at {offset} of {length} bytes runs past the payload's {self.total} bytes",
            )

    def verify(self) -> None:
        """Raise unless every byte arrived and the digest matches the header's (after settle())."""
        self._hasher.check()
        if not self._hasher.idle:
            raise RuntimeError("chunks are still waiting to be hashed: await settle() first")
        if not self.complete:
            raise StreamError(StreamReason.INCOMPLETE, f"stream ended after {self.received} of {self.total} bytes")
        got, want = self.digest.hexdigest(), self.info.digest
        if got != want.hex:
            raise StreamError(
                StreamReason.SHA256_MISMATCH if want.algorithm == SHA256 else StreamReason.DIGEST_MISMATCH,
                f"payload {want.algorithm} is {got}, the header promised {want.hex}: the data was damaged; "
                "send it again",
            )

    def close(self) -> None:
        self.dest.close()


def check_payload_header(path: str | os.PathLike[str], info: StreamInfo) -> Layout:
    """The layout a received payload file declares, checked against its stream header."""
    try:
        layout = tensorfile.read_layout(path)
    except TensorFileError as exc:
        raise StreamError(StreamReason.BAD_PAYLOAD, f"the payload is not a SafeTensors file: {exc}") from exc
    if not same_tensors(layout, info.layout):
        raise StreamError(
            StreamReason.BAD_PAYLOAD, "the payload's own SafeTensors header disagrees with the stream header"
        )
    return layout
