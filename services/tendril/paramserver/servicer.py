"""The thin gRPC layer of the ParameterServer: messages in and out, streams cut into chunks.

Errors are the core's ParameterServerError; the server factory maps them to status codes.
Every request names its run through :func:`_run_id` (``run_id``, else the deprecated
``job_id``).
The four tensor-stream methods are registered with wire-level frames instead of protobuf
objects for their stream messages (see :mod:`tendril.core.streaming`): pushes arrive
as :class:`Frame` with zero-copy chunk data, pulls are sent as frames cut from an mmap.
When the server has a data port (:mod:`tendril.core.dataplane`) and a client asks for it,
the payload bytes go over a data connection instead, and the call carries the header and the
verdict; a client that asks for several connections gets up to ``paramserver.data_streams``
tickets, and each of those connections carries byte ranges of the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tendril.core import dataplane, ids, metrics
from tendril.core.dataplane import DataPlane, PushTarget, Ticket
from tendril.core.errors import ErrorKind
from tendril.core.fanout import SubscriptionOverflow
from tendril.core.identity import caller_id, certificate_id
from tendril.core.logs import get_logger
from tendril.core.streaming import (
    STREAM_ACCEPTED,
    Frame,
    StreamError,
    StreamInfo,
    chunk_frame,
    chunk_ranges,
    codec_from_proto,
    file_frames,
    header_frame,
    header_message,
    info_from_header,
    mapping,
    parse_frame,
    run_id_of,
)
from tendril.core.validate import Checks
from tendril.paramserver.core import WATCH_QUEUE, ParameterServerCore, RoundStatus, RunState, Served
from tendril.paramserver.errors import ParameterServerError, ParamserverReason, StreamReason
from tendril.paramserver.rounds import RunConfig
from tendril.paramserver.spool import Spool, stream_error
from tendril.paramserver.store import check_run_id
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc

log = get_logger("tendril.paramserver")
SERVICE_NAME = paramserver_pb2.DESCRIPTOR.services_by_name["ParameterServerService"].full_name
CHECK = Checks(ParameterServerError)


_RUN_STATES = {
    RunState.OPEN: paramserver_pb2.RUN_STATE_OPEN,
    RunState.FINISHED: paramserver_pb2.RUN_STATE_FINISHED,
    RunState.CLOSED: paramserver_pb2.RUN_STATE_CLOSED,
}


def _run_id(request: Any) -> str:
    """The valid run id a request names (``run_id``, else the deprecated ``job_id``)."""
    return check_run_id(run_id_of(request))


def _round_state(closed: bool) -> paramserver_pb2.RoundState:
    return paramserver_pb2.ROUND_STATE_CLOSED if closed else paramserver_pb2.ROUND_STATE_OPEN


def status_to_proto(status: RoundStatus) -> paramserver_pb2.RoundStatus:
    return paramserver_pb2.RoundStatus(
        run_id=status.run_id,
        round=status.round,
        state=_round_state(status.closed),
        committed_workers=status.committed,
        expected_workers=status.expected_workers,
        rounds=status.rounds,
        run_state=_RUN_STATES[status.run_state],
        expected_worker_ids=status.expected_names,
    )


def _worker_id(value: str, field: str) -> str:
    """``value`` when it is empty or a peer id (the worker a push or pull names)."""
    return CHECK.id(ids.PEER_ID, value, field, ParamserverReason.BAD_WORKER_ID) if value else value


def _bad(message: str, reason: ParamserverReason | StreamReason) -> ParameterServerError:
    return ParameterServerError(ErrorKind.INVALID_ARGUMENT, message, reason=reason)


def _codec(value: int) -> str:
    try:
        return codec_from_proto(value)
    except StreamError as exc:
        raise stream_error(exc) from exc


async def _read_header(requests: AsyncIterator[Frame]) -> StreamInfo:
    first = await anext(requests, None)
    if first is None or first.header is None:
        raise _bad("a tensor stream must start with a header message", ParamserverReason.HEADER_MISSING)
    try:
        info = info_from_header(first.header)
    except StreamError as exc:
        raise stream_error(exc) from exc
    check_run_id(info.run_id)  # (info_from_header read run_id, else job_id)
    _worker_id(info.worker_id, "header.worker_id")  # (an empty one: WORKER_ID_MISSING where it is needed)
    return info


async def _feed(target: PushTarget, requests: AsyncIterator[Frame]) -> None:
    """Write the chunks that follow the header into ``target`` until the client half-closes."""
    async for frame in requests:
        if frame.data is None:
            raise _bad("only chunks may follow the header", ParamserverReason.UNEXPECTED_HEADER)
        await target.write(frame.offset, frame.data)  # type: ignore[misc]


async def receive_push(
    plane: DataPlane | None,
    context: grpc.aio.ServicerContext,
    info: StreamInfo,
    target: PushTarget,
    requests: AsyncIterator[Frame],
) -> bool:
    """Take a push's bytes into ``target`` (the header is read and accepted): over the data plane
    when the client asked for it and ``plane`` has a ticket to spare, else (or when the client
    could not connect) the chunks that follow in the call, until the client half-closes.
    Returns whether a data connection broke off before the last byte."""
    tickets = _tickets(plane, context, ranged=hasattr(target, "range_view"))
    # The sender's go-ahead for the bytes (see streaming.STREAM_ACCEPTED), with the offer if any.
    await context.send_initial_metadata(STREAM_ACCEPTED + _offer_metadata(tickets))
    cut = False
    if plane is not None and len(tickets) > 1:
        requests, cut = await plane.receive_push_ranged(tickets, target, info.total_bytes, requests)  # type: ignore[arg-type]
    elif plane is not None and tickets:
        requests, cut = await plane.receive_push(tickets[0], target, info.total_bytes, requests)
    await _feed(target, requests)
    return cut


def _tickets(plane: DataPlane | None, context: grpc.aio.ServicerContext, *, ranged: bool = True) -> list[Ticket]:
    """Data-plane tickets when the caller asked for the plane and it has them to spare: as many
    as the caller asked for, up to the plane's ``streams`` (one unless ``ranged`` is possible)."""
    metadata = context.invocation_metadata()
    if plane is None or not dataplane.requested(metadata):
        return []
    # NOTE: under mTLS the ticket is bound to the caller's certificate: only a connection that
    # presents the same name may use it. Without client certificates the ticket alone counts.
    mutual = plane.tls is not None and plane.tls.require_client_cert
    identity = certificate_id(context) if mutual else ""
    count = min(dataplane.requested_streams(metadata), plane.streams) if ranged else 1
    if count <= 1:
        ticket = plane.offer(identity)
        return [ticket] if ticket is not None else []
    return plane.offer_many(identity, count)


def _offer_metadata(tickets: list[Ticket]) -> tuple[tuple[str, str], ...]:
    if not tickets:
        return ()
    offer = tickets[0].offer
    if len(tickets) > 1:
        offer = dataclasses.replace(offer, tickets=tuple(t.token for t in tickets))
    return offer.metadata()


def _served_header(served: Served, run_id: str, offset: int, stream_id: str) -> bytes:
    info = StreamInfo(stream_id, run_id, served.round, "", served.weight, served.layout, served.digest, offset)
    return header_frame(header_message(info), contributors=served.contributors)


def _check_offset(offset: int, served: Served) -> None:
    if offset > served.layout.total_bytes:
        raise ParameterServerError(
            ErrorKind.OUT_OF_RANGE,
            f"offset {offset} is past the payload's {served.layout.total_bytes} bytes; start again from 0",
            reason=ParamserverReason.BAD_OFFSET,
        )


class ParameterServerServicer(paramserver_pb2_grpc.ParameterServerServiceServicer):
    """gRPC face of :class:`ParameterServerCore`."""

    def __init__(self, core: ParameterServerCore, plane: DataPlane | None = None) -> None:
        self.core = core
        self.plane = plane

    async def _receive(
        self, context: grpc.aio.ServicerContext, info: StreamInfo, spool: Spool, requests: AsyncIterator[Frame]
    ) -> bool:
        try:
            return await receive_push(self.plane, context, info, spool, requests)
        finally:
            self.core.release(spool)

    async def OpenJob(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        run_id = _run_id(request)
        config = RunConfig.build(
            expected_workers=request.expected_workers,
            quorum=request.quorum,
            round_timeout_seconds=request.round_timeout_seconds,
            # NOTE: unset means the default, 0 means 0 (outer_momentum 0: plain SGD outer steps).
            outer_lr=request.outer_lr if request.HasField("outer_lr") else None,
            outer_momentum=request.outer_momentum if request.HasField("outer_momentum") else None,
            codec=_codec(request.codec),
            rounds=request.rounds,
        )
        owner = _worker_id(request.owner_id, "owner_id")
        round, resumed = await self.core.open_job(run_id, config, owner_id=owner)
        return paramserver_pb2.OpenJobResponse(round=round, resumed=resumed)

    async def SetExpectedWorkers(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        run_id = _run_id(request)
        workers = [CHECK.id(ids.PEER_ID, w, "worker_ids", ParamserverReason.BAD_WORKER_ID) for w in request.worker_ids]
        status = await self.core.set_expected(run_id, caller_id(context), workers)
        return paramserver_pb2.SetExpectedWorkersResponse(status=status_to_proto(status))

    async def CloseJob(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.core.close_job(_run_id(request), purge=request.purge)
        return paramserver_pb2.CloseJobResponse()

    async def GetRound(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        view = self.core.get_round(_run_id(request))
        return paramserver_pb2.GetRoundResponse(
            run_id=view.run_id,
            job_id=view.run_id,  # the deprecated name, for clients that still read it
            round=view.round,
            state=_round_state(view.closed),
            committed_workers=view.committed,
            # NOTE: the workers the run's scheduler named; before it named any (a run is opened
            # with a count), the workers that have pushed to it so far.
            expected_workers=view.known_workers,
            pushes_in_flight=view.pushes_in_flight,
        )

    async def WatchRound(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        statuses = self.core.watch_round(_run_id(request), name=caller_id(context) or context.peer())
        try:
            async for status in statuses:
                yield paramserver_pb2.WatchRoundResponse(status=status_to_proto(status))
        except SubscriptionOverflow as exc:
            raise ParameterServerError(
                ErrorKind.ABORTED,
                f"this watch fell {WATCH_QUEUE} changes behind and was cut off; watch again "
                "(a new watch starts with the state now)",
                reason=ParamserverReason.WATCH_OVERFLOW,
            ) from exc
        finally:
            await statuses.aclose()

    async def PushUpdate(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        requests: AsyncIterator[Frame] = aiter(request_iterator)
        info = await _read_header(requests)
        spool = await self.core.begin_push(info)
        if spool.received != info.start_offset:
            self.core.release(spool)
            return paramserver_pb2.PushUpdateResponse(committed=False, received_bytes=spool.received)
        await self._receive(context, info, spool, requests)
        metrics.BYTES_RECEIVED.labels(stream="update_push").inc(spool.received - info.start_offset)
        if not spool.complete:
            return paramserver_pb2.PushUpdateResponse(committed=False, received_bytes=spool.received)
        contributors = await self.core.commit_push(spool)
        return paramserver_pb2.PushUpdateResponse(
            committed=True, received_bytes=info.total_bytes, contributors=contributors
        )

    async def PushParameters(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        requests: AsyncIterator[Frame] = aiter(request_iterator)
        info = await _read_header(requests)
        spool = await self.core.begin_parameters(info)
        if spool is None:
            view = self.core.get_round(info.run_id)
            return paramserver_pb2.PushParametersResponse(accepted=False, round=view.round)
        if spool.received != info.start_offset:
            raise ParameterServerError(
                ErrorKind.FAILED_PRECONDITION,
                f"this parameter stream is at byte {spool.received}, not {info.start_offset}; resume from there",
                reason=ParamserverReason.BAD_OFFSET,
            )
        cut = await self._receive(context, info, spool, requests)
        metrics.BYTES_RECEIVED.labels(stream="params_push").inc(spool.received - info.start_offset)
        if not spool.complete and cut:
            # NOTE: the call itself is fine, so the client would read the shortfall as its own
            # fault (INCOMPLETE is not retried); it is a broken connection, as a cut call is.
            raise ParameterServerError(
                ErrorKind.UNAVAILABLE,
                f"the data connection broke after {spool.received} of {info.total_bytes} bytes; push again",
                reason=StreamReason.DATA_CONNECTION_LOST,
            )
        if not spool.complete:
            raise _bad(
                f"the parameter stream ended after {spool.received} of {info.total_bytes} bytes",
                StreamReason.INCOMPLETE,
            )
        accepted, round = await self.core.commit_parameters(spool)
        return paramserver_pb2.PushParametersResponse(accepted=accepted, round=round)

    async def PullUpdate(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        run_id = _run_id(request)
        codec = _codec(request.codec) if request.codec else ""
        timeout = None
        if request.HasField("timeout_seconds"):
            timeout = CHECK.number(
                request.timeout_seconds,
                "timeout_seconds",
                ParamserverReason.BAD_TIMEOUT,
                minimum=0.0,
                meaning="unset: the run's round timeout; 0: do not wait",
            )
        _worker_id(request.worker_id, "worker_id")
        served = await self.core.update_payload(run_id, request.round, codec, timeout, worker_id=request.worker_id)
        _check_offset(request.offset, served)
        stream_id = f"{run_id}/update/{request.round}/{served.layout.codec}"
        async for frame in self._stream(context, served, run_id, request.offset, stream_id):
            yield frame
        metrics.BYTES_SENT.labels(stream="update_pull").inc(served.layout.total_bytes - request.offset)

    async def PullParameters(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        run_id = _run_id(request)
        served = await self.core.parameters_payload(run_id)
        _check_offset(request.offset, served)
        async for frame in self._stream(context, served, run_id, request.offset, f"{run_id}/theta/{served.round}"):
            yield frame
        metrics.BYTES_SENT.labels(stream="params_pull").inc(served.layout.total_bytes - request.offset)

    async def _stream(
        self, context: grpc.aio.ServicerContext, served: Served, run_id: str, offset: int, stream_id: str
    ) -> AsyncIterator[bytes]:
        """The header, then the payload from ``offset``: over a data connection when the client
        asked and came in time, else as chunks in the call."""
        tickets = _tickets(self.plane, context)
        try:
            if tickets:
                await context.send_initial_metadata(_offer_metadata(tickets))
            view = getattr(served, "view", None)
            if view is not None:
                stream = _stream_view(self.plane, tickets, served, view, run_id, offset, stream_id)
            else:
                stream = _stream_file(self.plane, tickets, served, run_id, offset, stream_id)
            async for frame in stream:
                yield frame
        finally:
            for ticket in tickets:
                ticket.withdraw()


def _connection_lost(exc: OSError) -> ParameterServerError:
    return ParameterServerError(
        ErrorKind.UNAVAILABLE,
        f"the data connection broke before the payload was through ({exc}); pull again from the bytes received",
        reason=StreamReason.DATA_CONNECTION_LOST,
    )


def _replaced() -> ParameterServerError:
    return ParameterServerError(
        ErrorKind.ABORTED,
        "the payload was replaced (a round closed) just as it was requested; ask again",
        reason=ParamserverReason.PAYLOAD_REPLACED,
    )


async def _send_ranged(
    plane: DataPlane,
    tickets: list[Ticket],
    view: memoryview,
    *,
    ready: Any = None,
    mapping: Any = None,
) -> bool:
    """Serve a ranged pull over the connections of ``tickets``; False when none came."""
    came = 0

    async def one(ticket: Ticket) -> None:
        nonlocal came
        conn = await ticket.connection()
        if conn is None:
            return
        came += 1
        try:
            await plane.send_ranges(conn, view, ready=ready, mapping=mapping)
        except ValueError as exc:
            raise _connection_lost(OSError(str(exc))) from exc
        finally:
            conn.close()

    started = time.perf_counter()
    results = await asyncio.gather(*(one(t) for t in tickets), return_exceptions=True)
    log.info(
        "paramserver.sent_ranges",
        bytes=len(view),
        streams=came,
        offered=len(tickets),
        seconds=round(time.perf_counter() - started, 4),
    )
    for result in results:
        if isinstance(result, OSError):
            raise _connection_lost(result) from result
        if isinstance(result, BaseException):
            raise result
    return came > 0


async def _stream_file(
    plane: DataPlane | None, tickets: list[Ticket], served: Served, run_id: str, offset: int, stream_id: str
) -> AsyncIterator[bytes]:
    """A payload file: over the data connection, else as chunks cut lazily from an mmap of it.

    Either way the file is mapped before the header promises its bytes, and the mapping stays
    valid if the file is replaced.
    """
    if plane is None or not tickets:
        frames = file_frames(served.path, offset)
        try:
            first = next(frames, None)  # maps the file now, before the header promises its bytes
        except FileNotFoundError:
            raise _replaced() from None
        try:
            yield _served_header(served, run_id, offset, stream_id)
            if first is not None:
                yield first
                for frame in frames:
                    yield frame
        finally:
            frames.close()
        return
    with contextlib.ExitStack() as stack:
        try:
            mm, view = stack.enter_context(mapping(served.path))
        except FileNotFoundError:
            raise _replaced() from None
        yield _served_header(served, run_id, offset, stream_id)
        if len(tickets) > 1:
            if await _send_ranged(plane, tickets, view, mapping=mm):
                return
            for start, length in chunk_ranges(len(view), offset):
                yield chunk_frame(view, start, length)
            return
        conn = await tickets[0].connection()
        if conn is None:
            # NOTE: the client did not come (it could not connect and calls again without
            # asking, or it is slow): the call carries the bytes.
            for start, length in chunk_ranges(len(view), offset):
                yield chunk_frame(view, start, length)
            return
        try:
            await plane.send_view(conn, view, offset, mapping=mm)
        except OSError as exc:
            raise _connection_lost(exc) from exc
        finally:
            conn.close()


async def _stream_view(
    plane: DataPlane | None,
    tickets: list[Ticket],
    served: Served,
    view: memoryview,
    run_id: str,
    offset: int,
    stream_id: str,
) -> AsyncIterator[bytes]:
    """A payload in memory, each piece sent once ``served.ready`` says it is final."""
    ready = getattr(served, "ready", None)
    yield _served_header(served, run_id, offset, stream_id)
    if plane is not None and len(tickets) > 1:
        if await _send_ranged(plane, tickets, view, ready=ready):
            return
    elif plane is not None and tickets:
        conn = await tickets[0].connection()
        if conn is not None:
            try:
                await plane.send_view(conn, view, offset, ready=ready)
            except OSError as exc:
                raise _connection_lost(exc) from exc
            finally:
                conn.close()
            return
    for start, length in chunk_ranges(len(view), offset):
        if ready is not None:
            await ready(start + length)
        yield chunk_frame(view, start, length)


def add_to_server(servicer: ParameterServerServicer, server: grpc.aio.Server) -> None:
    """Register the service like the generated ``add_..._to_server``, stream messages as frames."""
    pb = paramserver_pb2

    def unary(method: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request.FromString, response_serializer=response.SerializeToString
        )

    handlers = {
        "OpenJob": unary(servicer.OpenJob, pb.OpenJobRequest, pb.OpenJobResponse),
        "CloseJob": unary(servicer.CloseJob, pb.CloseJobRequest, pb.CloseJobResponse),
        "GetRound": unary(servicer.GetRound, pb.GetRoundRequest, pb.GetRoundResponse),
        "SetExpectedWorkers": unary(
            servicer.SetExpectedWorkers, pb.SetExpectedWorkersRequest, pb.SetExpectedWorkersResponse
        ),
        "WatchRound": grpc.unary_stream_rpc_method_handler(
            servicer.WatchRound,
            request_deserializer=pb.WatchRoundRequest.FromString,
            response_serializer=pb.WatchRoundResponse.SerializeToString,
        ),
        "PushUpdate": grpc.stream_unary_rpc_method_handler(
            servicer.PushUpdate,
            request_deserializer=parse_frame,
            response_serializer=pb.PushUpdateResponse.SerializeToString,
        ),
        "PushParameters": grpc.stream_unary_rpc_method_handler(
            servicer.PushParameters,
            request_deserializer=parse_frame,
            response_serializer=pb.PushParametersResponse.SerializeToString,
        ),
        # Response frames are already wire bytes: no serializer.
        "PullUpdate": grpc.unary_stream_rpc_method_handler(
            servicer.PullUpdate, request_deserializer=pb.PullUpdateRequest.FromString, response_serializer=None
        ),
        "PullParameters": grpc.unary_stream_rpc_method_handler(
            servicer.PullParameters, request_deserializer=pb.PullParametersRequest.FromString, response_serializer=None
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
