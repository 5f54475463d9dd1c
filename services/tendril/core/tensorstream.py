"""Tensor streams to and from a ParameterServerService: the client side, resumable.

The API (docs/ARCHITECTURE.md "Data plane contracts"), all on a grpc.aio channel to the
parameter server; ``codec`` is a name from the registry :data:`tendril.core.codecs.CODECS`:

* ``push_update(channel, path, *, run_id, round, worker_id, weight, codec) -> bytes_sent``
* ``pull_update(channel, *, run_id, round, dest, codec, timeout) -> (bytes_received, contributors)``
* ``push_parameters(channel, path, *, run_id, worker_id) -> (accepted, round)``
* ``pull_parameters(channel, *, run_id, dest) -> round``

Files given and written are SafeTensors; what is written (``dest``) is always fp32, written
atomically (a failure leaves no file). Payloads carry an XXH3-128 digest (pulls verify
whichever digest the server names). When the server offers its data port
(:mod:`tendril.core.dataplane`) the bytes go over a socket beside the call (``sendfile`` out,
``recv_into`` in), else as chunks in the call. A stream cut by the network is resumed from the
last offset the server acknowledged (pushes) or received (pulls); transient failures are
retried a bounded number of times, everything else raises :class:`TensorStreamError` carrying
the server's status kind, reason and message.

Several connections (docs/WAN.md "Parallel streams"): a transfer over the data port may be
split into byte ranges carried by K connections at once; :data:`CHOOSER` picks K per
parameter server host and direction from the throughput of earlier transfers
(:class:`StreamChooser`), up to ``paramserver.data_streams`` (:func:`configure`).

The primitives (headers, chunking, receivers) are in :mod:`tendril.core.streaming`,
SafeTensors and codecs in :mod:`tendril.core.tensorfile` and
:mod:`tendril.core.codecs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import errno
import ipaddress
import mmap
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from tendril.core import codecs, dataplane, metrics, tensorfile, tls
from tendril.core.calls import remote_error
from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.logs import get_logger
from tendril.core.server import CHUNK_BYTES
from tendril.core.streaming import (
    DEFAULT_DIGEST,
    Digest,
    FileDestination,
    Frame,
    Receiver,
    StreamError,
    StreamInfo,
    check_payload_header,
    codec_to_proto,
    digest_file,
    file_frames,
    header_frame,
    header_message,
    info_from_header,
    mapping,
    new_hash,
    parse_frame,
    stream_accepted,
)
from tendril.core.tensorfile import Layout
from tendril_proto.paramserver.v1 import paramserver_pb2
from tendril_sdk.reasons import ParamserverReason, StreamReason
from tendril_sdk.retry import TRANSIENT_CODES, RetryPolicy

log = get_logger("tendril.tensorstream")

__all__ = [
    "TensorStreamError",
    "TensorStreamReason",
    "prepared_payload",
    "pull_call",
    "pull_parameters",
    "pull_update",
    "push_call",
    "push_parameters",
    "push_update",
]

ATTEMPTS = 6
# Worth another try: the server restarts or the network cut the stream. ABORTED means the
# server took the stream over on a newer call; NOT_FOUND with RUN_NOT_OPEN means the
# aggregate job's executor has not opened the run yet (it is dispatched just before).
# NOTE: not DEADLINE_EXCEEDED: a PullUpdate that waited its timeout out answers it (ROUND_STILL_OPEN).
RETRY = RetryPolicy(
    codes=TRANSIENT_CODES - {grpc.StatusCode.DEADLINE_EXCEEDED},
    reasons=frozenset({ParamserverReason.RUN_NOT_OPEN}),
    attempts=ATTEMPTS + 1,
    initial_backoff=0.2,
    max_backoff=3.0,
)
_METHOD = "/" + paramserver_pb2.DESCRIPTOR.services_by_name["ParameterServerService"].full_name + "/"


def push_call(channel: grpc.aio.Channel, method: str, response: Any) -> Any:
    """A client-streaming call that sends ready-made frames (bytes) as its requests."""
    return channel.stream_unary(_METHOD + method, request_serializer=None, response_deserializer=response.FromString)


def pull_call(channel: grpc.aio.Channel, method: str, request: Any) -> Any:
    """A server-streaming call whose responses are parsed as frames (zero-copy chunk data)."""
    return channel.unary_stream(
        _METHOD + method, request_serializer=request.SerializeToString, response_deserializer=parse_frame
    )


class TensorStreamReason(enum.StrEnum):
    """Reasons of the client's own failures (the server's reasons are passed on as they are)."""

    FILE_NOT_FOUND = "FILE_NOT_FOUND"  # the file to send does not exist
    BAD_FILE = "BAD_FILE"  # the file to send cannot be read or encoded
    PUSH_STALLED = "PUSH_STALLED"  # a push was resumed several times without the server taking a byte
    NOT_COMMITTED = "NOT_COMMITTED"  # the server took a whole update without committing it
    PULL_CUT_SHORT = "PULL_CUT_SHORT"  # a pulled stream kept ending before its last byte
    RPC_FAILED = "RPC_FAILED"  # the call failed without an ErrorInfo (transport, deadline); see its code


class TensorStreamError(TendrilError):
    """A push or pull failed; ``kind``/``reason`` are the server's when it answered."""

    service = "tensorstream"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: TensorStreamReason | StreamReason | str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)


def _from_rpc(err: grpc.aio.AioRpcError, what: str) -> TensorStreamError:
    return remote_error(
        err, f"{what}: the parameter server", TensorStreamError, no_reason=TensorStreamReason.RPC_FAILED
    )


def _from_stream(exc: StreamError, what: str) -> TensorStreamError:
    return TensorStreamError(exc.kind, f"{what}: {exc.message}", reason=exc.reason)


# What grpc.aio reports when a client write fails because the server already ended the call.
_LOST_STATUS_DETAILS = "Internal error from Core"


def _status_lost(err: grpc.aio.AioRpcError) -> bool:
    """True when a push's real status was replaced by grpc.aio's own INTERNAL (grpc/grpc#36066).

    # NOTE: a server that fails a push mid-stream (the run closed, the round closed) ends the
    # call while chunks are still being written; the failed write then replaces the server's
    # status. The push is resumed once more: its header is rejected before any chunk is sent
    # (see streaming.STREAM_ACCEPTED), so the retry carries the server's real answer.
    """
    return err.code() is grpc.StatusCode.INTERNAL and err.details() == _LOST_STATUS_DETAILS


# -- payloads ------------------------------------------------------------------------------------


Mapper = Callable[[Path, int], mmap.mmap]  # (kept file, its size) -> the mapping its owner keeps of it


def _sized(kept: Path, size: int) -> Path:
    """``kept`` (a kept file, made if missing) holding ``size`` bytes: its pages kept up to there."""
    kept.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(kept, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return kept


@dataclasses.dataclass(frozen=True)
class Payload:
    """A file ready to stream: its layout and digest."""

    path: Path
    layout: Layout
    digest: Digest


def _digest(path: Path) -> Digest:
    return Digest(DEFAULT_DIGEST, digest_file(path, DEFAULT_DIGEST).hexdigest())


@contextlib.contextmanager
def prepared_payload(
    path: str | os.PathLike[str],
    codec: str,
    *,
    block_size: int | None = None,
    digest: Digest | None = None,
    encoded: tuple[Path, Mapper] | None = None,
) -> Iterator[Payload]:
    """``path`` encoded with ``codec`` (``block_size`` None: the codec's default): the file itself
    when it already is (fp32 stays zero-copy), else a temp file beside it, removed when the block
    ends, or, with ``encoded`` (a kept file and its owner's mapper), that file, encoded in place.

    ``digest``: the file's, as its writer computed it; taken for the file itself (not read
    through to hash it: the receiver checks the bytes against it), ignored for an encoded one.
    """
    wire = codecs.get(codec)
    block_size = wire.default_block_size if block_size is None else block_size
    source = Path(path)
    layout = tensorfile.read_layout(source)
    if layout.codec == codec and (not wire.blockwise or layout.block_size == block_size):
        yield Payload(source, layout, digest if digest is not None else _digest(source))
        return
    if encoded is not None:
        kept, mapped = encoded
        size = tensorfile.encoded_layout_of(source, codec, block_size).total_bytes
        view = memoryview(mapped(_sized(kept, size), size))
        try:
            layout = tensorfile.encode_into(source, view, codec, block_size)
            hasher = new_hash(DEFAULT_DIGEST)
            hasher.update(view)
        finally:
            view.release()
        yield Payload(kept, layout, Digest(DEFAULT_DIGEST, hasher.hexdigest()))
        return
    temp = source.with_name(f".{source.name}.{codec}.{uuid.uuid4().hex[:8]}.payload")
    try:
        layout = tensorfile.convert_file(source, temp, codec, block_size=block_size)
        yield Payload(temp, layout, _digest(temp))
    finally:
        temp.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def _prepared(
    path: str | os.PathLike[str],
    codec: str,
    block_size: int | None = None,
    digest: Digest | None = None,
    encoded: tuple[Path, Mapper] | None = None,
) -> AsyncIterator[Payload]:
    """prepared_payload in a thread (encoding a model is CPU work), errors as TensorStreamError."""
    manager = prepared_payload(path, codec, block_size=block_size, digest=digest, encoded=encoded)
    try:
        payload = await asyncio.to_thread(manager.__enter__)
    except FileNotFoundError as exc:
        raise TensorStreamError(
            ErrorKind.NOT_FOUND, f"{path} does not exist", reason=TensorStreamReason.FILE_NOT_FOUND
        ) from exc
    except (OSError, ValueError) as exc:
        raise TensorStreamError(
            ErrorKind.INVALID_ARGUMENT, f"cannot send {path}: {exc}", reason=TensorStreamReason.BAD_FILE
        ) from exc
    try:
        yield payload
    finally:
        manager.__exit__(None, None, None)


# -- how many connections ----------------------------------------------------------------------


@dataclasses.dataclass
class _Choice:
    streams: int = 1  # what the next transfer uses
    settled: bool = False
    rates: dict[int, float] = dataclasses.field(default_factory=dict)  # bytes/s measured with each count


class StreamChooser:
    """How many connections a transfer to a parameter server host uses, chosen by measurement.

    The rule (docs/WAN.md "Parallel streams"): per host and direction, start with one
    connection; each transfer of at least :attr:`min_bytes` measures its throughput; while not
    settled, the count doubles after each measurement (1 → 2 → 4 → 8, up to ``cap``) as long as
    it raised the throughput by at least :attr:`gain` over the count before; when it did not,
    the smaller count is kept, as when the cap is reached. A settled count whose throughput later
    falls under half of what it measured starts the probe again from one. Smaller transfers use
    the chosen count, at most one connection per :attr:`min_range` bytes. A loopback host always
    gets one connection (unless :attr:`loopback` allows more).

    # NOTE: on loopback there is no delay to hide and several connections only share the same
    # cores: on this 2-core machine probing 2 and 4 connections per push, with three workers
    # pushing at once, slowed `python -m bench --only sync` rounds down.
    """

    min_bytes = 16 * 1024 * 1024
    min_range = 4 * 1024 * 1024
    gain = 1.10

    def __init__(self, cap: int = 8, *, loopback: bool = False) -> None:
        self.cap = cap
        self.loopback = loopback
        self.choices: dict[tuple[str, str], _Choice] = {}
        self._lock = threading.Lock()

    def streams(self, host: str, direction: str, nbytes: int) -> int:
        """Connections for a transfer of ``nbytes`` to ``host``."""
        if self.cap <= 1 or (not self.loopback and _is_loopback(host)):
            return 1
        with self._lock:
            choice = self.choices.setdefault((host, direction), _Choice())
            streams = min(choice.streams, self.cap)
        return max(1, min(streams, nbytes // self.min_range))

    def measured(self, host: str, direction: str, streams: int, nbytes: int, seconds: float) -> None:
        """A transfer of ``nbytes`` over ``streams`` connections took ``seconds``."""
        if nbytes < self.min_bytes or seconds <= 0 or self.cap <= 1 or (not self.loopback and _is_loopback(host)):
            return
        rate = nbytes / seconds
        with self._lock:
            choice = self.choices.setdefault((host, direction), _Choice())
            if streams != min(choice.streams, self.cap):
                return  # (a transfer sized below the count, or one that began before a change)
            before = choice.streams
            if choice.settled:
                if rate < 0.5 * choice.rates.get(streams, rate):
                    choice.streams, choice.settled, choice.rates = 1, False, {}
            else:
                choice.rates[streams] = rate
                fewer = choice.rates.get(streams // 2) if streams > 1 else None
                if fewer is not None and rate < self.gain * fewer:
                    choice.streams, choice.settled = streams // 2, True
                elif streams >= self.cap:
                    choice.streams, choice.settled = min(streams, self.cap), True
                else:
                    # NOTE: the next count of the probe (1, 2, 4, 8...), not a retry's backoff.
                    doubled = streams + streams
                    choice.streams = doubled if doubled <= self.cap else self.cap
            after, settled = choice.streams, choice.settled
        metrics.DATA_STREAM_MBIT.labels(peer=host, direction=direction).set(round(rate * 8 / 1e6, 1))
        metrics.DATA_STREAMS.labels(peer=host, direction=direction).set(after)
        log.info(
            "tensorstream.streams_measured",
            host=host,
            direction=direction,
            streams=streams,
            mbit_per_s=round(rate * 8 / 1e6, 1),
            next_streams=after,
            settled=settled,
            changed=after != before,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


CHOOSER = StreamChooser()


def configure(cap: int) -> None:
    """The most connections one transfer of this process uses (``paramserver.data_streams``)."""
    CHOOSER.cap = max(1, cap)


# -- pushing -------------------------------------------------------------------------------------


# NOTE: a data port that cannot be used (a firewall that drops, a server whose data port listens
# on another interface) costs up to a connect timeout per transfer; after it failed once, a host
# is not asked again for this long, and its pushes and pulls move their bytes in the call.
PLANE_BACKOFF_SECONDS = 60.0
_plane_failed: dict[str, float] = {}


def _plane_usable(host: str | None) -> bool:
    if host is None:
        return False
    failed = _plane_failed.get(host)
    return failed is None or time.monotonic() - failed > PLANE_BACKOFF_SECONDS


def _plane_refused(host: str) -> None:
    if len(_plane_failed) > 256:
        _plane_failed.clear()
    _plane_failed[host] = time.monotonic()


@dataclasses.dataclass
class _PushState:
    sent: int = 0  # payload bytes put on the wire, resends included
    upto: int = 0  # end of the last bytes handed to gRPC or the data connection
    plane: bool = True  # ask for the data plane (until it failed without moving a byte)
    ranges: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # of a ranged push, kept across tries
    moved: bool = False  # the last try moved bytes over ranged connections
    # A measurement of the last try's data connections, taken once the server's verdict is in:
    # (connections, bytes, when they started), or None.
    timing: tuple[int, int, float] | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _ranged(host: str, offer: dataplane.Offer, work: Callable[[Any], int], what: str) -> tuple[int, int, bool]:
    """Run ``work(sock)`` on one connection per ticket of ``offer`` at once (blocking, one thread
    each); returns (bytes moved, connections set up, whether every connection ended cleanly)."""
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def one(ticket: bytes) -> None:
        try:
            sock = dataplane.connect(host, offer.one(ticket), tls.active())
        except dataplane.Refused as exc:
            log.warning("tensorstream.data_plane_refused", host=host, port=offer.port, error=str(exc))
            return
        moved, clean = 0, True
        try:
            moved = work(sock)
        except OSError as exc:
            clean = False
            log.warning("tensorstream.data_connection_cut", host=host, port=offer.port, error=str(exc), what=what)
        finally:
            sock.close()
        with lock:
            results.append((moved, clean))

    threads = [threading.Thread(target=one, args=(t,), name="tensorstream-range") for t in offer.tickets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(m for m, _ in results), len(results), all(c for _, c in results)


def _push_ranges(
    host: str, offer: dataplane.Offer, path: Path, start: int, total: int, state: _PushState
) -> tuple[int, int, bool]:
    """Push ``path`` from ``start`` as ranges over the offer's connections (blocking)."""
    if not state.ranges or state.ranges[0][0] > start:
        # NOTE: also when the server holds less than the ranges began at (it restarted): they
        # are cut again from where it stands.
        state.ranges = dataplane.split_ranges(start, total, len(offer.tickets), CHUNK_BYTES)
    queue = dataplane.RangeQueue((max(a, start), b) for a, b in state.ranges if b > start)

    with mapping(path) as (mm, view):

        def work(sock: Any) -> int:
            moved = 0

            def sent(n: int) -> None:
                nonlocal moved
                moved += n
                with state.lock:
                    state.sent += n

            dataplane.push_ranges(sock, view, queue, mapping=mm, sent=sent)
            return moved

        return _ranged(host, offer, work, "push")


def _send_file(host: str, offer: dataplane.Offer, path: Path, start: int, total: int, state: _PushState) -> None:
    """Push ``path`` from ``start`` over a data connection (blocking; raises dataplane.Refused
    when the connection could not be set up, OSError when it broke)."""
    sock = dataplane.connect(host, offer, tls.active())

    def sent(upto: int) -> None:
        state.sent += upto - state.upto
        state.upto = upto

    try:
        with mapping(path) as (mm, view):
            dataplane.send_range(sock, view, start, total, mapping=mm, sent=sent)
    finally:
        sock.close()


async def _push_over_plane(
    host: str, offer: dataplane.Offer, path: Path, start: int, state: _PushState, total: int
) -> bool:
    """Send the payload from ``start`` over the offered data connection; False when it could not
    be set up (the chunks then go in the call), True when it was used (completely or not: the
    server's answer says what it holds)."""
    started = time.perf_counter()
    if offer.ranged:
        moved, connected, clean = await asyncio.to_thread(_push_ranges, host, offer, path, start, total, state)
        state.moved = moved > 0
        if not connected:
            _plane_refused(host)
            state.plane = False
            return False
        if clean:
            state.timing = (len(offer.tickets), moved, started)
        return True
    try:
        await asyncio.to_thread(_send_file, host, offer, path, start, total, state)
    except dataplane.Refused as exc:
        log.warning("tensorstream.data_plane_refused", host=host, port=offer.port, error=str(exc))
        _plane_refused(host)
        state.plane = False
        return False
    except OSError as exc:
        log.warning("tensorstream.data_connection_cut", host=host, port=offer.port, error=str(exc), upto=state.upto)
        return True
    state.timing = (1, total - start, started)
    return True


async def _push_stream(
    call: Callable[..., Awaitable[Any]],
    info: StreamInfo,
    path: Path,
    *,
    resumable: bool,
    what: str,
    host: str | None = None,
) -> tuple[Any, int]:
    """Send header + bytes, resuming where the server says; returns (response, bytes sent).

    ``call`` is the push's multicallable (see :func:`push_call`); when it is a wrapper whose
    result is not the gRPC call itself, chunks follow the header in the call without waiting
    for the server's go-ahead (the behaviour before it existed). The bytes go over the
    server's data port on ``host`` (the host the channel dials) when it offers one (see
    :mod:`tendril.core.dataplane`).
    """
    state = _PushState()
    total = info.total_bytes
    offset = 0
    failures = 0
    backoff = RETRY.backoff()
    while True:
        header = header_frame(header_message(dataclasses.replace(info, start_offset=offset)))

        pending: list[grpc.aio.Call] = []  # the call these requests feed
        ask = state.plane and _plane_usable(host) and isinstance(call, grpc.aio.StreamUnaryMultiCallable)
        streams = CHOOSER.streams(host, "push", total - offset) if ask and host else 1
        if state.ranges:  # a ranged push goes on over as many connections as it has ranges left
            streams = max(1, min(len([r for r in state.ranges if r[1] > offset]), dataplane.MAX_STREAMS))
        state.moved, state.timing = False, None

        async def requests(
            header: bytes = header, start: int = offset, pending: list[grpc.aio.Call] = pending, ask: bool = ask
        ) -> AsyncIterator[bytes]:
            yield header
            state.upto = start
            # No byte before the server accepted the header (see streaming.STREAM_ACCEPTED):
            # a rejection then ends the call while nothing is being written, and its status
            # (RUN_CLOSED, ROUND_CLOSED, a resume offset...) reaches the caller intact.
            # NOTE: `pending` is filled before this runs: gRPC consumes the requests in a task
            # that starts only once the caller awaits the call.
            for rpc in pending:
                metadata = await rpc.initial_metadata()
                if not stream_accepted(metadata):
                    await rpc.code()  # let the call end before this iterator does (no half-close racing it)
                    return
                offer = dataplane.Offer.from_metadata(metadata) if ask else None
                if offer is not None and host and await _push_over_plane(host, offer, path, start, state, total):
                    return  # the call ends here; the server's answer is the verdict
            for frame in file_frames(path, start):
                size = min(total - state.upto, CHUNK_BYTES)
                state.sent += size
                state.upto += size
                yield frame

        try:
            rpc = call(requests(), metadata=dataplane.request(streams)) if ask else call(requests())
            if isinstance(rpc, grpc.aio.Call):
                pending.append(rpc)
            response = await rpc
        except grpc.aio.AioRpcError as err:
            if not (RETRY.retryable(err) or _status_lost(err)) or failures >= ATTEMPTS:
                raise _from_rpc(err, what) from err
            await asyncio.sleep(backoff.next())
            failures += 1
            if resumable:
                # Offer to go on after the last byte sent; the server answers with what it
                # really holds when that is less (bytes still in flight when the cut came).
                offset = max(offset, state.upto)
            else:
                offset = 0
                info = dataclasses.replace(info, stream_id=uuid.uuid4().hex)
            continue
        acked = getattr(response, "received_bytes", None)
        if acked is None or getattr(response, "committed", True) or acked == info.total_bytes:
            if state.timing is not None and host:
                # NOTE: timed to the verdict, not to the last sendall: a send returns once its bytes
                # are in the socket's buffer, and K connections buffer K times as much.
                streams, moved, started = state.timing
                CHOOSER.measured(host, "push", streams, moved, time.perf_counter() - started)
            return response, state.sent
        if acked == offset:
            failures += 1  # the server ended the call without progress
            if not state.moved:
                state.plane = False  # (a data connection that moved nothing: the next try sends chunks)
            if failures > ATTEMPTS:
                raise TensorStreamError(
                    ErrorKind.UNAVAILABLE,
                    f"{what}: the server stopped at byte {acked} and made no progress",
                    reason=TensorStreamReason.PUSH_STALLED,
                )
        offset = acked


async def push_update(
    channel: grpc.aio.Channel,
    path: str | os.PathLike[str],
    *,
    run_id: str,
    round: int,
    worker_id: str,
    weight: float,
    codec: str,
    block_size: int | None = None,
    digest: Digest | None = None,
    encoded: tuple[Path, Mapper] | None = None,
) -> int:
    """Stream the pseudo-gradient file ``path`` (Δ = θ_start − θ_local) for ``round``; returns bytes
    sent. ``block_size``: the codec's block (int8, int4) or chunk (sparse); None: its default.
    ``digest``: the file's, from its writer; ``encoded``: a kept file to encode it into with
    another codec (see :func:`prepared_payload`)."""
    what = f"pushing the round {round} update of run {run_id}"
    async with _prepared(path, codec, block_size, digest, encoded) as payload:
        info = StreamInfo(uuid.uuid4().hex, run_id, round, worker_id, weight, payload.layout, payload.digest)
        response, sent = await _push_stream(
            push_call(channel, "PushUpdate", paramserver_pb2.PushUpdateResponse),
            info,
            payload.path,
            resumable=True,
            what=what,
            host=dataplane.channel_host(channel),
        )
    metrics.BYTES_SENT.labels(stream="update_push").inc(sent)
    if not response.committed:
        raise TensorStreamError(
            ErrorKind.INTERNAL, f"{what}: the server did not commit the update", reason=TensorStreamReason.NOT_COMMITTED
        )
    return sent


async def push_parameters(
    channel: grpc.aio.Channel, path: str | os.PathLike[str], *, run_id: str, worker_id: str
) -> tuple[bool, int]:
    """Offer θ0 (sent as fp32); returns (accepted, the run's current round). The first offer wins."""
    what = f"pushing the parameters of run {run_id}"
    async with _prepared(path, "fp32") as payload:
        info = StreamInfo(uuid.uuid4().hex, run_id, 0, worker_id, 0.0, payload.layout, payload.digest)
        # NOTE: PushParametersResponse has no received_bytes, so a cut θ0 push starts over
        # under a new stream id; it happens once per run.
        response, sent = await _push_stream(
            push_call(channel, "PushParameters", paramserver_pb2.PushParametersResponse),
            info,
            payload.path,
            resumable=False,
            what=what,
            host=dataplane.channel_host(channel),
        )
    metrics.BYTES_SENT.labels(stream="params_push").inc(sent)
    return bool(response.accepted), int(response.round)


# -- pulling -------------------------------------------------------------------------------------


@dataclasses.dataclass
class PullResult:
    """What a finished pull got."""

    info: StreamInfo
    bytes_received: int  # over the network, resends included
    contributors: int


PULL_PIECE_BYTES = 4 * 1024 * 1024  # received, then written and hashed, at a time


def _receive_file(host: str, offer: dataplane.Offer, receiver: Receiver) -> int:
    """Receive the rest of a pulled payload over a data connection into ``receiver`` (blocking;
    raises dataplane.Refused when the connection could not be set up). Returns the bytes received;
    fewer than were missing when the connection broke."""
    sock = dataplane.connect(host, offer, tls.active())
    got_total = 0
    try:
        if getattr(receiver.dest, "direct", False):
            # Straight into the destination's mapping, hashed on the pool as it lands.
            while receiver.received < receiver.total:
                at = receiver.received
                length = min(PULL_PIECE_BYTES, receiver.total - at)
                got = dataplane.recv_exactly(sock, receiver.view(at, length))  # type: ignore[arg-type]
                if got:
                    receiver.landed(at, got)
                    got_total += got
                if got < length:
                    break
            return got_total
        buffer = memoryview(bytearray(min(PULL_PIECE_BYTES, receiver.total - receiver.received) or 1))
        while receiver.received < receiver.total:
            length = min(len(buffer), receiver.total - receiver.received)
            got = dataplane.recv_exactly(sock, buffer[:length])
            if got:
                receiver.feed(receiver.received, buffer[:got])  # written and hashed here, in order
                got_total += got
            if got < length:
                break
    finally:
        sock.close()
    return got_total


class _PullFile(FileDestination):
    """The file a pull writes; ranged connections receive straight into a mapping of it, and so
    does a single one when the file is kept and ``mapped`` gives the mapping its owner keeps of it
    (``direct``: no copy through a buffer, no page faults once the mapping was used before)."""

    def __init__(self, path: Path, size: int, *, keep: bool = False, mapped: Mapper | None = None) -> None:
        # (a kept file of the size already holds its blocks: fallocate would only walk its pages)
        same = keep and os.path.exists(path) and os.stat(path).st_size == size
        super().__init__(path, size, keep=keep, preallocate=not same)
        self._map: mmap.mmap | None = None
        self._own = True
        if keep and os.fstat(self.fd).st_size != size:
            os.ftruncate(self.fd, size)  # (a kept file of another size: its pages up to ``size`` stay)
        self.direct = keep and mapped is not None
        if self.direct:
            assert mapped is not None
            self._map, self._own = mapped(path, size), False

    def view(self, offset: int, length: int) -> memoryview:
        if self._map is None:
            self._map = mmap.mmap(self.fd, 0)
        return memoryview(self._map)[offset : offset + length]

    def close(self) -> None:
        if not self._own:
            self._map = None  # (its owner keeps it for the next pull)
        if self._map is not None:
            # NOTE: a view still held (by a hasher that failed) keeps the mapping; it goes with it.
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        super().close()


@dataclasses.dataclass
class _RangedPull:
    """What a ranged pull holds across its tries: the ranges, and what arrived beyond the prefix."""

    receiver: Receiver
    ranges: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    held: dataplane.Held = dataclasses.field(default_factory=dataplane.Held)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def missing(self) -> list[tuple[int, int]]:
        prefix = self.receiver.received
        out = []
        for a, b in self.ranges:
            at = self.held.resume(a, b, prefix)
            if at < b:
                out.append((at, b))
        return out

    def landed(self, offset: int, n: int) -> None:
        with self.lock:
            self.held.add(offset, offset + n)
            prefix = self.held.advance(self.receiver.received)
            if prefix > self.receiver.received:
                self.receiver.landed(self.receiver.received, prefix - self.receiver.received)


def _receive_ranges(host: str, offer: dataplane.Offer, pull: _RangedPull) -> tuple[int, int, bool]:
    """Receive the missing ranges of a pull over the offer's connections (blocking)."""
    receiver = pull.receiver
    if not pull.ranges:
        pull.ranges = dataplane.split_ranges(receiver.received, receiver.total, len(offer.tickets), CHUNK_BYTES)
    queue = dataplane.RangeQueue(pull.missing())
    place = receiver.dest.view  # type: ignore[attr-defined]
    return _ranged(host, offer, lambda sock: dataplane.pull_ranges(sock, queue, place, pull.landed), "pull")


async def _pull_over_plane(
    host: str, offer: dataplane.Offer, receiver: Receiver, ranged: _RangedPull | None = None
) -> int | None:
    """The bytes a pull received over the offered data connection(s); None when none could be set up."""
    await receiver.settle()  # from here on it is fed synchronously, on the transfer's thread
    started, begin = time.perf_counter(), receiver.received
    if offer.ranged and ranged is not None:
        moved, connected, clean = await asyncio.to_thread(_receive_ranges, host, offer, ranged)
        if not connected:
            _plane_refused(host)
            return None
        if clean:
            CHOOSER.measured(host, "pull", len(offer.tickets), moved, time.perf_counter() - started)
        return moved
    try:
        got = await asyncio.to_thread(_receive_file, host, offer, receiver)
    except dataplane.Refused as exc:
        log.warning("tensorstream.data_plane_refused", host=host, port=offer.port, error=str(exc))
        _plane_refused(host)
        return None
    if receiver.received == receiver.total:
        CHOOSER.measured(host, "pull", 1, receiver.received - begin, time.perf_counter() - started)
    return got


async def _pull_stream(
    open_call: Callable[[int, int], Any],
    part: Path,
    *,
    what: str,
    host: str | None = None,
    keep: bool = False,
    mapped: Mapper | None = None,
) -> PullResult:
    """Receive a server stream into ``part``, resuming by offset; verified when it returns.

    ``keep``: ``part`` is a file kept from earlier pulls, written in place (not truncated);
    ``mapped``: the mapping of it that its owner keeps (see :class:`_PullFile`).

    ``open_call(offset, streams)`` starts the call, asking for the data plane with that many
    connections when ``streams`` > 0 (while ``host``, the host the channel dials, is known and
    the plane has not failed).
    """
    receiver: Receiver | None = None
    ranged: _RangedPull | None = None
    contributors = 0
    net = 0
    failures = 0
    plane = _plane_usable(host)
    backoff = RETRY.backoff()
    try:
        while True:
            offset = receiver.received if receiver else 0
            streams = 0
            if plane and host:
                if ranged is not None and ranged.ranges:
                    streams = max(1, min(len(ranged.missing()), dataplane.MAX_STREAMS))
                elif receiver is not None:
                    streams = CHOOSER.streams(host, "pull", receiver.total - offset)
                else:
                    # NOTE: the size is known only from the header; the count chosen for this host
                    # is asked for, and a small payload is then cut into fewer ranges.
                    streams = CHOOSER.streams(host, "pull", 1 << 62)
            call = open_call(offset, streams)
            fell_back = False
            try:
                first = True
                frame: Frame
                async for frame in call:
                    if first:
                        first = False
                        if frame.header is None:
                            raise StreamError(StreamReason.BAD_HEADER, "the stream did not start with a header")
                        info = info_from_header(frame.header)
                        contributors = frame.contributors or contributors
                        moved = receiver is not None and info.digest != receiver.info.digest
                        if receiver is not None and (moved or info.start_offset != offset):
                            # The payload changed between attempts (new parameters): start over.
                            receiver.close()
                            receiver = ranged = None
                            break
                        if receiver is None:
                            if info.start_offset:
                                break  # asked for 0, got something else: ask again
                            receiver = Receiver(info, _PullFile(part, info.total_bytes, keep=keep, mapped=mapped))
                            ranged = _RangedPull(receiver)
                        offer = dataplane.Offer.from_metadata(await call.initial_metadata()) if plane else None
                        if offer is not None and host:
                            got = await _pull_over_plane(host, offer, receiver, ranged)
                            if got is None:
                                plane, fell_back = False, True  # the call again, the bytes in it
                                break
                            net += got
                            # What follows is the end of the call: the server's verdict.
                        continue
                    if receiver is None or frame.data is None:
                        raise StreamError(StreamReason.BAD_CHUNK, "expected a chunk after the header")
                    await receiver.feed_async(frame.offset, frame.data)
                    net += len(frame.data)
            except grpc.aio.AioRpcError as err:
                if not RETRY.retryable(err) or failures >= ATTEMPTS:
                    raise _from_rpc(err, what) from err
                await asyncio.sleep(backoff.next())
                failures += 1
                continue
            finally:
                call.cancel()  # no-op when the stream ended; stops it when we broke off
            if receiver is not None and receiver.complete:
                await receiver.settle()
                receiver.verify()
                receiver.close()
                return PullResult(receiver.info, net, contributors)
            if fell_back:
                continue  # the data plane could not be used: ask again at once, without it
            failures += 1
            if failures > ATTEMPTS:
                raise TensorStreamError(
                    ErrorKind.UNAVAILABLE,
                    f"{what}: the stream kept ending early",
                    reason=TensorStreamReason.PULL_CUT_SHORT,
                )
    except StreamError as exc:
        raise _from_stream(exc, what) from exc
    finally:
        if receiver is not None:
            receiver.close()


def _link_at(kept: Path, dest: Path) -> None:
    """Link the kept file ``kept`` at ``dest``, atomically (a copy across file systems)."""
    link = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.link")
    try:
        os.link(kept, link)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copyfile(kept, link)  # (a kept file on another file system than dest)
    try:
        os.replace(link, dest)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _decode_kept(part: Path, layout: Layout, decoded: tuple[Path, Mapper]) -> Path:
    """Decode payload ``part`` into the kept fp32 file of ``decoded``, in place through its mapping."""
    out, mapped = decoded
    size = tensorfile.fp32_layout_of(layout)[0].total_bytes
    tensorfile.decode_into(part, memoryview(mapped(_sized(out, size), size)))
    return out


async def _finish_pull(
    part: Path, dest: Path, result: PullResult, *, keep: bool = False, decoded: tuple[Path, Mapper] | None = None
) -> None:
    """Turn a received payload into the fp32 file ``dest`` (atomically); ``keep``: ``part`` is a
    kept file, linked at ``dest`` (it stays for the next pull); ``decoded``: a payload of another
    codec is decoded into that kept fp32 file (through the mapping its owner keeps), linked at ``dest``."""

    def work() -> None:
        try:
            layout = check_payload_header(part, result.info)
            if layout.codec != "fp32" and decoded is not None:
                _link_at(_decode_kept(part, layout, decoded), dest)
            elif layout.codec != "fp32":
                tensorfile.convert_file(part, dest, "fp32", check_finite=False)
            elif keep:
                _link_at(part, dest)
            else:
                os.replace(part, dest)
        finally:
            if not keep:
                part.unlink(missing_ok=True)

    try:
        await asyncio.to_thread(work)
    except StreamError as exc:
        raise _from_stream(exc, f"storing {dest}") from exc


def _part_path(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")


async def pull_update(
    channel: grpc.aio.Channel,
    *,
    run_id: str,
    round: int,
    dest: str | os.PathLike[str],
    codec: str,
    timeout: float | None = None,
    worker_id: str = "",
    scratch: str | os.PathLike[str] | None = None,
    mapped: Mapper | None = None,
    decoded: tuple[Path, Mapper] | None = None,
) -> tuple[int, int]:
    """Wait for ``round`` to close and store its outer update u (θ_new = θ + u) as fp32 at ``dest``.

    ``codec`` is the wire codec; ``timeout`` bounds the wait for the round (None: the run's
    round timeout; 0: do not wait); ``worker_id`` names the puller (a worker whose push of the round the server
    lost is then told so: PUSH_LOST). ``scratch``: a file kept from pull to pull
    (:class:`tendril_sdk.files.Reusable`) that the payload is received into in place (with the
    fp32 codec, then linked at ``dest``); what it holds after a failed pull is undefined
    (``dest`` is untouched). ``mapped(path, size)``: the mapping of ``scratch`` its owner keeps
    from pull to pull (:meth:`tendril_sdk.files.Reusable.mapping`), received into directly.
    ``decoded``: with another codec, a kept file (and its owner's mapper) the update is decoded
    into in place, then linked at ``dest``.
    Returns (bytes received, workers whose updates made up the round).
    """
    call = pull_call(channel, "PullUpdate", paramserver_pb2.PullUpdateRequest)
    what = f"pulling the round {round} update of run {run_id}"
    try:
        wire = codec_to_proto(codec)
    except StreamError as exc:
        raise _from_stream(exc, what) from exc
    target = Path(dest)
    keep = scratch is not None
    if keep:
        part = Path(scratch)  # type: ignore[arg-type]
        part.parent.mkdir(parents=True, exist_ok=True)
    else:
        part = _part_path(target)

    def open_call(offset: int, streams: int) -> Any:
        request = paramserver_pb2.PullUpdateRequest(
            run_id=run_id, round=round, codec=wire, offset=offset, timeout_seconds=timeout, worker_id=worker_id
        )
        return call(request, metadata=dataplane.request(streams) if streams else None)

    try:
        result = await _pull_stream(
            open_call, part, what=what, host=dataplane.channel_host(channel), keep=keep, mapped=mapped if keep else None
        )
        await _finish_pull(part, target, result, keep=keep, decoded=decoded)
    finally:
        if not keep:
            part.unlink(missing_ok=True)
    metrics.BYTES_RECEIVED.labels(stream="update_pull").inc(result.bytes_received)
    return result.bytes_received, result.contributors


async def pull_parameters(channel: grpc.aio.Channel, *, run_id: str, dest: str | os.PathLike[str]) -> int:
    """Store the run's current θ (fp32) at ``dest``; returns the round these parameters start."""
    call = pull_call(channel, "PullParameters", paramserver_pb2.PullParametersRequest)
    what = f"pulling the parameters of run {run_id}"
    target = Path(dest)
    part = _part_path(target)

    def open_call(offset: int, streams: int) -> Any:
        request = paramserver_pb2.PullParametersRequest(run_id=run_id, offset=offset)
        return call(request, metadata=dataplane.request(streams) if streams else None)

    try:
        result = await _pull_stream(open_call, part, what=what, host=dataplane.channel_host(channel))
        await _finish_pull(part, target, result)
    finally:
        part.unlink(missing_ok=True)
    metrics.BYTES_RECEIVED.labels(stream="params_pull").inc(result.bytes_received)
    return result.info.round
