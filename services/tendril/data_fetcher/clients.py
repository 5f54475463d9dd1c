"""gRPC adapters of the core's two upstream ports: schedulers (AssignSlice) and data nodes (FetchSlice).

They turn RPC failures into FetcherError: failures a retry can cure (peer down, cut stream,
deadline) become UNAVAILABLE; anything else is the peer refusing, FAILED_PRECONDITION with the
peer's own status in the message.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc

from tendril.core.channel import error_info_reason, open_channel
from tendril.core.errors import ErrorKind
from tendril.data_fetcher.errors import FetcherError, FetcherReason
from tendril.data_fetcher.model import Assignment, Chunk
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,  # the peer stopped (graceful stop) mid-call
        grpc.StatusCode.INTERNAL,  # e.g. RST_STREAM when a connection breaks mid-stream
        grpc.StatusCode.UNKNOWN,
    }
)


def upstream_error(peer: str, address: str, exc: grpc.aio.AioRpcError) -> FetcherError:
    code = exc.code()
    text = f"{peer} at {address} answered {code.name}: {exc.details()}"
    metadata = {"peer": address, "upstream_code": code.name}
    if reason := error_info_reason(exc):
        metadata["upstream_reason"] = reason
    if code in TRANSIENT_CODES:
        return FetcherError(ErrorKind.UNAVAILABLE, text, reason=FetcherReason.UPSTREAM_UNAVAILABLE, metadata=metadata)
    return FetcherError(ErrorKind.FAILED_PRECONDITION, text, reason=FetcherReason.UPSTREAM_REFUSED, metadata=metadata)


class ChannelPool:
    """One channel per peer address, reused by every job; all named as the worker."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = open_channel(address, peer_id=self.peer_id)
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


class GrpcCoordinator:
    """CoordinationService.AssignSlice of the job's scheduler."""

    def __init__(self, pool: ChannelPool, call_timeout_seconds: float) -> None:
        self.pool = pool
        self.call_timeout_seconds = call_timeout_seconds

    async def assign(self, address: str, job_id: str, worker_id: str, cached_slices: list[str]) -> Assignment:
        stub = scheduler_pb2_grpc.CoordinationServiceStub(self.pool.get(address))
        request = scheduler_pb2.AssignSliceRequest(job_id=job_id, worker_id=worker_id, cached_slices=cached_slices)
        try:
            reply = await stub.AssignSlice(request, timeout=self.call_timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            raise upstream_error("scheduler", address, exc) from None
        a = reply.assignment
        return Assignment(
            dataset_id=a.dataset_id,
            slice_name=a.slice_name,
            size_bytes=a.size_bytes,
            sha256=a.sha256,
            data_node_address=a.data_node_address,
            epoch=a.epoch,
        )


class GrpcSliceSource:
    """DataNodeService.FetchSlice of the data node that serves the slice."""

    def __init__(self, pool: ChannelPool) -> None:
        self.pool = pool

    async def stream(self, address: str, dataset_id: str, slice_name: str, offset: int) -> AsyncGenerator[Chunk, None]:
        stub = data_pb2_grpc.DataNodeServiceStub(self.pool.get(address))
        call = stub.FetchSlice(data_pb2.FetchSliceRequest(dataset_id=dataset_id, slice_name=slice_name, offset=offset))
        try:
            async for reply in call:
                yield Chunk(reply.offset, reply.data, reply.total_bytes)
        except grpc.aio.AioRpcError as exc:
            raise upstream_error("data node", address, exc) from None
        finally:
            call.cancel()
