"""JobService over gRPC: translates messages and calls :class:`JobManager`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format, struct_pb2

from tendril.core.identity import caller_id
from tendril.core.timeutil import from_duration, to_timestamp
from tendril.job.core import JobManager
from tendril.job.model import JobRecord, JobState
from tendril.job.spec import DispatchSpec
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc

SERVICE_NAME = "tendril.job.v1.JobService"


def job_to_proto(record: JobRecord) -> job_pb2.Job:
    config = struct_pb2.Struct()
    config.update(record.config)
    return job_pb2.Job(
        job_id=record.job_id,
        lease_id=record.lease_id,
        owner_id=record.owner_id,
        executor=common_pb2.ExecutorRef(executor_class=record.executor_class, name=record.executor_name),
        state=job_pb2.JobState.Value(f"JOB_STATE_{record.state.value}"),
        exit_code=record.exit_code or 0,
        reason=record.reason,
        created_at=to_timestamp(record.created_at),
        started_at=to_timestamp(record.started_at),
        finished_at=to_timestamp(record.finished_at),
        work_dir=record.work_dir,
        config=config,
        progress=record.progress,
    )


def state_from_proto(value: int) -> JobState | None:
    name = job_pb2.JobState.Name(value) if value in job_pb2.JobState.values() else ""
    return JobState(name.removeprefix("JOB_STATE_")) if name and value else None


class JobServicer(job_pb2_grpc.JobServiceServicer):
    """The thin layer: every rule lives in the JobManager."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def Dispatch(self, request: job_pb2.DispatchRequest, context: Any) -> job_pb2.DispatchResponse:
        spec = DispatchSpec(
            job_id=request.job_id,
            lease_id=request.lease_id,
            executor_class=request.executor.executor_class,
            executor_name=request.executor.name,
            config=json_format.MessageToDict(request.config),
            timeout_seconds=from_duration(request.timeout) if request.HasField("timeout") else 0.0,
            coordinator_address=request.coordinator_address,
        )
        record = await self.manager.dispatch(caller_id(context), spec)
        return job_pb2.DispatchResponse(job=job_to_proto(record))

    async def Get(self, request: job_pb2.GetRequest, context: Any) -> job_pb2.GetResponse:
        return job_pb2.GetResponse(job=job_to_proto(self.manager.get(request.job_id)))

    async def List(self, request: job_pb2.ListRequest, context: Any) -> job_pb2.ListResponse:
        states = [s for s in (state_from_proto(v) for v in request.states) if s is not None]
        records = self.manager.list(states, request.limit)
        return job_pb2.ListResponse(jobs=[job_to_proto(r) for r in records])

    async def Watch(self, request: job_pb2.WatchRequest, context: Any) -> AsyncIterator[job_pb2.WatchResponse]:
        watch = self.manager.watch(request.job_id, name=caller_id(context) or context.peer())
        async for record in watch.relay(context):
            yield job_pb2.WatchResponse(job=job_to_proto(record))

    async def Cancel(self, request: job_pb2.CancelRequest, context: Any) -> job_pb2.CancelResponse:
        record = await self.manager.cancel(caller_id(context), request.job_id, request.reason)
        return job_pb2.CancelResponse(job=job_to_proto(record))

    async def Logs(self, request: job_pb2.LogsRequest, context: Any) -> AsyncIterator[job_pb2.LogsResponse]:
        async for text in self.manager.logs(request.job_id, request.tail_lines, request.follow):
            yield job_pb2.LogsResponse(text=text)
