"""JobService over gRPC: translates messages and calls :class:`JobManager`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import struct_pb2

from tendril.core import ids
from tendril.core.identity import caller_id
from tendril.core.timeutil import to_timestamp
from tendril.core.validate import Checks
from tendril.job.core import JobManager
from tendril.job.errors import JobError, JobReason
from tendril.job.model import JobRecord, JobState, validate_job_id
from tendril.job.results import Manifest, check_path
from tendril.job.spec import DispatchSpec
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc

SERVICE_NAME = "tendril.job.v1.JobService"
CHECK = Checks(JobError)
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600.0  # a job's timeout: at most a year (unset or 0: the worker's default)
MAX_CANCEL_REASON_CHARS = 1024  # a Cancel's reason is kept in the job's record


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


def manifest_to_proto(manifest: Manifest) -> job_pb2.ResultsManifest:
    return job_pb2.ResultsManifest(
        job_id=manifest.job_id,
        files=[job_pb2.ResultFile(path=f.path, size_bytes=f.size_bytes, sha256=f.sha256) for f in manifest.files],
        total_bytes=manifest.total_bytes,
        skipped=list(manifest.skipped),
        kept_at=to_timestamp(manifest.kept_at),
    )


def state_from_proto(value: int) -> JobState:
    """A JobState of a declared, specified proto value (check it first: :meth:`Checks.enum`)."""
    return JobState(job_pb2.JobState.Name(value).removeprefix("JOB_STATE_"))


def _job_id(value: str) -> str:
    validate_job_id(value)
    return value


class JobServicer(job_pb2_grpc.JobServiceServicer):
    """The thin layer: every rule lives in the JobManager."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def Dispatch(self, request: job_pb2.DispatchRequest, context: Any) -> job_pb2.DispatchResponse:
        if request.lease_id:  # (empty: the spec's check says what to give)
            CHECK.id(ids.KEY, request.lease_id, "lease_id", JobReason.BAD_LEASE_ID)
        timeout = 0.0
        if request.HasField("timeout"):
            timeout = CHECK.duration(
                request.timeout, "timeout", JobReason.BAD_TIMEOUT, maximum=MAX_TIMEOUT_SECONDS, meaning="0: no limit"
            )
        spec = DispatchSpec(
            job_id=request.job_id,
            lease_id=request.lease_id,
            executor_class=request.executor.executor_class,
            executor_name=request.executor.name,
            config=CHECK.struct(request.config, "config", JobReason.BAD_CONFIG),
            timeout_seconds=timeout,
            coordinator_address=request.coordinator_address,
        )
        record = await self.manager.dispatch(caller_id(context), spec)
        return job_pb2.DispatchResponse(job=job_to_proto(record))

    async def Get(self, request: job_pb2.GetRequest, context: Any) -> job_pb2.GetResponse:
        return job_pb2.GetResponse(job=job_to_proto(self.manager.get(_job_id(request.job_id))))

    async def List(self, request: job_pb2.ListRequest, context: Any) -> job_pb2.ListResponse:
        values = CHECK.enums(request.states, job_pb2.JobState, "states", JobReason.BAD_STATE)
        states = [state_from_proto(v) for v in values]
        records = self.manager.list(states, request.limit)
        return job_pb2.ListResponse(jobs=[job_to_proto(r) for r in records])

    async def Watch(self, request: job_pb2.WatchRequest, context: Any) -> AsyncIterator[job_pb2.WatchResponse]:
        if request.job_id:  # (empty: every job)
            validate_job_id(request.job_id)
        watch = self.manager.watch(request.job_id, name=caller_id(context) or context.peer())
        async for record in watch.relay(context):
            yield job_pb2.WatchResponse(job=job_to_proto(record))

    async def Cancel(self, request: job_pb2.CancelRequest, context: Any) -> job_pb2.CancelResponse:
        if len(request.reason) > MAX_CANCEL_REASON_CHARS:
            raise CHECK.invalid(
                "reason",
                f"reason is {len(request.reason)} characters long; say why in at most {MAX_CANCEL_REASON_CHARS}",
                JobReason.REASON_TOO_LONG,
            )
        record = await self.manager.cancel(caller_id(context), _job_id(request.job_id), request.reason)
        return job_pb2.CancelResponse(job=job_to_proto(record))

    async def Logs(self, request: job_pb2.LogsRequest, context: Any) -> AsyncIterator[job_pb2.LogsResponse]:
        async for text in self.manager.logs(_job_id(request.job_id), request.tail_lines, request.follow):
            yield job_pb2.LogsResponse(text=text)

    async def ListResults(self, request: job_pb2.ListResultsRequest, context: Any) -> job_pb2.ListResultsResponse:
        manifest = self.manager.results_manifest(caller_id(context), _job_id(request.job_id))
        return job_pb2.ListResultsResponse(manifest=manifest_to_proto(manifest))

    async def FetchResult(
        self, request: job_pb2.FetchResultRequest, context: Any
    ) -> AsyncIterator[job_pb2.FetchResultResponse]:
        job_id = _job_id(request.job_id)
        chunks = self.manager.fetch_result(caller_id(context), job_id, check_path(request.path), request.offset)
        # NOTE: each chunk is read in a thread: a slow disk must not stall the event loop.
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            offset, data, size = chunk
            yield job_pb2.FetchResultResponse(offset=offset, data=data, size_bytes=size)

    async def DeleteResults(self, request: job_pb2.DeleteResultsRequest, context: Any) -> job_pb2.DeleteResultsResponse:
        freed = self.manager.delete_results(caller_id(context), _job_id(request.job_id))
        return job_pb2.DeleteResultsResponse(freed_bytes=freed)
