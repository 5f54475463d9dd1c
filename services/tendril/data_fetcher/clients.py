"""gRPC adapters of the core's two upstream ports: schedulers (AssignSlice) and data nodes (FetchSlice).

They turn RPC failures into FetcherError in the DataFetcher's own words
(:func:`tendril.core.calls.remote_error` with ``reason=``): failures a retry can cure (peer
down, cut stream, deadline) become UNAVAILABLE ``UPSTREAM_UNAVAILABLE``; anything else is the
peer refusing, FAILED_PRECONDITION ``UPSTREAM_REFUSED``. The peer's address, status code and
reason are in the metadata (``peer``, ``upstream_code``, ``upstream_reason``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc

from tendril.core.calls import ChannelPool, remote_error
from tendril.core.errors import ErrorKind
from tendril.data_fetcher.errors import FetcherError, FetcherReason
from tendril.data_fetcher.model import Assignment, Chunk
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc


def _reason(kind: ErrorKind, code: grpc.StatusCode) -> FetcherReason:
    return FetcherReason.UPSTREAM_UNAVAILABLE if kind is ErrorKind.UNAVAILABLE else FetcherReason.UPSTREAM_REFUSED


def upstream_error(peer: str, address: str, exc: grpc.aio.AioRpcError) -> FetcherError:
    return remote_error(
        exc,
        f"{peer} at {address}",
        FetcherError,
        address=address,
        reason=_reason,
        refused=ErrorKind.FAILED_PRECONDITION,
    )


class GrpcCoordinator:
    """CoordinationService.AssignSlice of the job's scheduler."""

    def __init__(self, pool: ChannelPool, call_timeout_seconds: float) -> None:
        self.pool = pool
        self.call_timeout_seconds = call_timeout_seconds

    async def assign(self, address: str, job_id: str, worker_id: str, cached_slices: list[str]) -> Assignment:
        request = scheduler_pb2.AssignSliceRequest(job_id=job_id, worker_id=worker_id, cached_slices=cached_slices)
        try:
            with self.pool.using(address) as channel:
                stub = scheduler_pb2_grpc.CoordinationServiceStub(channel)
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
        request = data_pb2.FetchSliceRequest(dataset_id=dataset_id, slice_name=slice_name, offset=offset)
        try:
            with self.pool.using(address) as channel:
                call = data_pb2_grpc.DataNodeServiceStub(channel).FetchSlice(request)
                try:
                    async for reply in call:
                        yield Chunk(reply.offset, reply.data, reply.total_bytes)
                finally:
                    call.cancel()
        except grpc.aio.AioRpcError as exc:
            raise upstream_error("data node", address, exc) from None
