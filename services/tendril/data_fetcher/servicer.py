"""The DataFetcher's gRPC servicer: translates messages to and from the core."""

from __future__ import annotations

import grpc

from tendril.data_fetcher.fetcher import DataFetcher
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2


class DataFetcherServicer(data_pb2_grpc.DataFetcherServiceServicer):
    """OpenJob / NextSlice / CloseJob / GetStats over a :class:`DataFetcher`."""

    def __init__(self, core: DataFetcher) -> None:
        self.core = core

    async def OpenJob(
        self, request: data_pb2.OpenJobRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.OpenJobResponse:
        prefetch = request.prefetch if request.HasField("prefetch") else None
        self.core.open_job(request.job_id, request.worker_id, request.coordinator_address, prefetch)
        return data_pb2.OpenJobResponse()

    async def NextSlice(
        self, request: data_pb2.NextSliceRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.NextSliceResponse:
        handout = await self.core.next_slice(request.job_id)
        a = handout.assignment
        return data_pb2.NextSliceResponse(
            cache_path=handout.path,
            assignment=scheduler_pb2.SliceAssignment(
                dataset_id=a.dataset_id,
                slice_name=a.slice_name,
                size_bytes=a.size_bytes,
                sha256=a.sha256,
                data_node_address=a.data_node_address,
                epoch=a.epoch,
            ),
            wait_seconds=handout.wait_seconds,
        )

    async def CloseJob(
        self, request: data_pb2.CloseJobRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.CloseJobResponse:
        await self.core.close_job(request.job_id)
        return data_pb2.CloseJobResponse()

    async def GetStats(
        self, request: data_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.GetStatsResponse:
        snap = self.core.snapshot()
        s = snap.stats
        return data_pb2.GetStatsResponse(
            cache_hits=s.cache_hits,
            cache_misses=s.cache_misses,
            cache_bytes=snap.cache_bytes,
            cache_capacity_bytes=snap.cache_capacity_bytes,
            bytes_downloaded=s.bytes_downloaded,
            wait_seconds=s.wait_seconds,
            sha256_mismatches=s.sha256_mismatches,
            open_jobs=snap.open_jobs,
            resumed_fetches=s.resumed_fetches,
            evictions=snap.evictions,
        )
