"""Tensor streams to and from a ParameterServerService: the client side, resumable.

The API (docs/ARCHITECTURE.md "Data plane contracts"), all on a grpc.aio channel to the
parameter server; ``codec`` is a name from the registry :data:`tendril.core.codecs.CODECS`:

* ``push_update(channel, path, *, run_id, round, worker_id, weight, codec) -> bytes_sent``
* ``pull_update(channel, *, run_id, round, dest, codec, timeout) -> (bytes_received, contributors)``
* ``push_parameters(channel, path, *, run_id, worker_id) -> (accepted, round)``
* ``pull_parameters(channel, *, run_id, dest) -> round``

Files given and written are SafeTensors; what is written (``dest``) is always fp32, written
atomically (a failure leaves no file). A stream cut by the network is resumed from the last
offset the server acknowledged (pushes) or received (pulls); transient failures are retried
a bounded number of times, everything else raises :class:`TensorStreamError` carrying the
server's status kind, reason and message.

The primitives (headers, chunking, receivers) are in :mod:`tendril.core.streaming`,
SafeTensors and codecs in :mod:`tendril.core.tensorfile` and
:mod:`tendril.core.codecs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from tendril.core import codecs, metrics, tensorfile
from tendril.core.calls import remote_error
from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.server import CHUNK_BYTES
from tendril.core.streaming import (
    FileDestination,
    Frame,
    Receiver,
    StreamError,
    StreamInfo,
    check_payload_header,
    codec_to_proto,
    file_frames,
    header_frame,
    header_message,
    info_from_header,
    parse_frame,
    stream_accepted,
)
from tendril.core.tensorfile import Layout
from tendril_proto.paramserver.v1 import paramserver_pb2
from tendril_sdk.reasons import ParamserverReason, StreamReason
from tendril_sdk.retry import TRANSIENT_CODES, RetryPolicy

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
    kind = ErrorKind.DATA_LOSS if exc.reason == StreamReason.SHA256_MISMATCH else ErrorKind.INVALID_ARGUMENT
    return TensorStreamError(kind, f"{what}: {exc.message}", reason=exc.reason)


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


@dataclasses.dataclass(frozen=True)
class Payload:
    """A file ready to stream: its layout and sha256."""

    path: Path
    layout: Layout
    sha256: str


@contextlib.contextmanager
def prepared_payload(
    path: str | os.PathLike[str], codec: str, *, block_size: int = codecs.DEFAULT_BLOCK_SIZE
) -> Iterator[Payload]:
    """``path`` encoded with ``codec``: the file itself when it already is (fp32 stays zero-copy),
    else a temp file beside it, removed when the block ends."""
    wire = codecs.get(codec)
    source = Path(path)
    layout = tensorfile.read_layout(source)
    if layout.codec == codec and (not wire.blockwise or layout.block_size == block_size):
        yield Payload(source, layout, tensorfile.sha256_file(source).hexdigest())
        return
    temp = source.with_name(f".{source.name}.{codec}.{uuid.uuid4().hex[:8]}.payload")
    try:
        layout = tensorfile.convert_file(source, temp, codec, block_size=block_size)
        yield Payload(temp, layout, tensorfile.sha256_file(temp).hexdigest())
    finally:
        temp.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def _prepared(path: str | os.PathLike[str], codec: str) -> AsyncIterator[Payload]:
    """prepared_payload in a thread (encoding a model is CPU work), errors as TensorStreamError."""
    manager = prepared_payload(path, codec)
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


# -- pushing -------------------------------------------------------------------------------------


@dataclasses.dataclass
class _PushState:
    sent: int = 0  # payload bytes put on the wire, resends included
    upto: int = 0  # end of the last chunk handed to gRPC


async def _push_stream(
    call: Callable[[AsyncIterator[bytes]], Awaitable[Any]],
    info: StreamInfo,
    path: Path,
    *,
    resumable: bool,
    what: str,
) -> tuple[Any, int]:
    """Send header + chunks, resuming where the server says; returns (response, bytes sent).

    ``call`` is the push's multicallable (see :func:`push_call`); when it is a wrapper whose
    result is not the gRPC call itself, chunks follow the header without waiting for the
    server's go-ahead (the behaviour before it existed).
    """
    state = _PushState()
    total = info.total_bytes
    offset = 0
    failures = 0
    backoff = RETRY.backoff()
    while True:
        header = header_frame(header_message(dataclasses.replace(info, start_offset=offset)))

        pending: list[grpc.aio.Call] = []  # the call these requests feed

        async def requests(
            header: bytes = header, start: int = offset, pending: list[grpc.aio.Call] = pending
        ) -> AsyncIterator[bytes]:
            yield header
            state.upto = start
            # No chunk before the server accepted the header (see streaming.STREAM_ACCEPTED):
            # a rejection then ends the call while nothing is being written, and its status
            # (RUN_CLOSED, ROUND_CLOSED, a resume offset...) reaches the caller intact.
            # NOTE: `pending` is filled before this runs: gRPC consumes the requests in a task
            # that starts only once the caller awaits the call.
            for rpc in pending:
                if not stream_accepted(await rpc.initial_metadata()):
                    await rpc.code()  # let the call end before this iterator does (no half-close racing it)
                    return
            for frame in file_frames(path, start):
                size = min(total - state.upto, CHUNK_BYTES)
                state.sent += size
                state.upto += size
                yield frame

        try:
            rpc = call(requests())
            if isinstance(rpc, grpc.aio.Call):
                pending.append(rpc)
            response = await rpc
        except grpc.aio.AioRpcError as err:
            if not (RETRY.retryable(err) or _status_lost(err)) or failures >= ATTEMPTS:
                raise _from_rpc(err, what) from err
            await asyncio.sleep(backoff.next())
            failures += 1
            if resumable:
                # Offer to go on after the last chunk sent; the server answers with what it
                # really holds when that is less (chunks still in flight when the cut came).
                offset = max(offset, state.upto)
            else:
                offset = 0
                info = dataclasses.replace(info, stream_id=uuid.uuid4().hex)
            continue
        acked = getattr(response, "received_bytes", None)
        if acked is None or getattr(response, "committed", True) or acked == info.total_bytes:
            return response, state.sent
        if acked == offset:
            failures += 1  # the server ended the call without progress
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
) -> int:
    """Stream the pseudo-gradient file ``path`` (Δ = θ_start − θ_local) for ``round``; returns bytes sent."""
    what = f"pushing the round {round} update of run {run_id}"
    async with _prepared(path, codec) as payload:
        info = StreamInfo(uuid.uuid4().hex, run_id, round, worker_id, weight, payload.layout, payload.sha256)
        response, sent = await _push_stream(
            push_call(channel, "PushUpdate", paramserver_pb2.PushUpdateResponse),
            info,
            payload.path,
            resumable=True,
            what=what,
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
        info = StreamInfo(uuid.uuid4().hex, run_id, 0, worker_id, 0.0, payload.layout, payload.sha256)
        # NOTE: PushParametersResponse has no received_bytes, so a cut θ0 push starts over
        # under a new stream id; it happens once per run.
        response, sent = await _push_stream(
            push_call(channel, "PushParameters", paramserver_pb2.PushParametersResponse),
            info,
            payload.path,
            resumable=False,
            what=what,
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


async def _pull_stream(
    open_call: Callable[[int], Any],
    part: Path,
    *,
    what: str,
) -> PullResult:
    """Receive a server stream into ``part``, resuming by offset; verified when it returns."""
    receiver: Receiver | None = None
    contributors = 0
    net = 0
    failures = 0
    backoff = RETRY.backoff()
    try:
        while True:
            offset = receiver.received if receiver else 0
            call = open_call(offset)
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
                        moved = receiver is not None and info.sha256 != receiver.info.sha256
                        if receiver is not None and (moved or info.start_offset != offset):
                            # The payload changed between attempts (new parameters): start over.
                            receiver.close()
                            receiver = None
                            break
                        if receiver is None:
                            if info.start_offset:
                                break  # asked for 0, got something else: ask again
                            receiver = Receiver(info, FileDestination(part, info.total_bytes))
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


async def _finish_pull(part: Path, dest: Path, result: PullResult) -> None:
    """Turn a received payload into the fp32 file ``dest`` (atomically)."""

    def work() -> None:
        try:
            layout = check_payload_header(part, result.info)
            if layout.codec == "fp32":
                os.replace(part, dest)
            else:
                tensorfile.convert_file(part, dest, "fp32", check_finite=False)
        finally:
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
) -> tuple[int, int]:
    """Wait for ``round`` to close and store its outer update u (θ_new = θ + u) as fp32 at ``dest``.

    ``codec`` is the wire codec; ``timeout`` bounds the wait for the round (None: the run's
    round timeout); ``worker_id`` names the puller (a worker whose push of the round the server
    lost is then told so: PUSH_LOST). Returns (bytes received, workers whose updates made up the
    round).
    """
    call = pull_call(channel, "PullUpdate", paramserver_pb2.PullUpdateRequest)
    what = f"pulling the round {round} update of run {run_id}"
    try:
        wire = codec_to_proto(codec)
    except StreamError as exc:
        raise _from_stream(exc, what) from exc
    target = Path(dest)
    part = _part_path(target)

    def open_call(offset: int) -> Any:
        request = paramserver_pb2.PullUpdateRequest(
            run_id=run_id, round=round, codec=wire, offset=offset, timeout_seconds=timeout or 0.0, worker_id=worker_id
        )
        return call(request)

    try:
        result = await _pull_stream(open_call, part, what=what)
        await _finish_pull(part, target, result)
    finally:
        part.unlink(missing_ok=True)
    metrics.BYTES_RECEIVED.labels(stream="update_pull").inc(result.bytes_received)
    return result.bytes_received, result.contributors


async def pull_parameters(channel: grpc.aio.Channel, *, run_id: str, dest: str | os.PathLike[str]) -> int:
    """Store the run's current θ (fp32) at ``dest``; returns the round these parameters start."""
    call = pull_call(channel, "PullParameters", paramserver_pb2.PullParametersRequest)
    what = f"pulling the parameters of run {run_id}"
    target = Path(dest)
    part = _part_path(target)

    def open_call(offset: int) -> Any:
        return call(paramserver_pb2.PullParametersRequest(run_id=run_id, offset=offset))

    try:
        result = await _pull_stream(open_call, part, what=what)
        await _finish_pull(part, target, result)
    finally:
        part.unlink(missing_ok=True)
    metrics.BYTES_RECEIVED.labels(stream="params_pull").inc(result.bytes_received)
    return result.info.round
