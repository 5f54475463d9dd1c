"""One job at one worker's JobService, seen by the peer that dispatched it (its owner):
dispatch, follow to its end (across JobService restarts), read its log's tail, cancel.

Used by the reference scheduler's driver and by ``tendril.submit``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import duration_pb2, struct_pb2

from tendril.core.calls import CURABLE_CODES, follow
from tendril.core.logs import get_logger
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_sdk.retry import RetryPolicy

log = get_logger("tendril.scheduler.dispatch")

TERMINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
CALL_TIMEOUT_SECONDS = 15.0
# A job's watch is opened again while its JobService does not answer or the stream broke
# (a restart); any other failure ends the member.
WATCH_POLICY = RetryPolicy(codes=CURABLE_CODES, attempts=None, initial_backoff=0.5, max_backoff=5.0)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def _duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


@dataclasses.dataclass(frozen=True)
class JobEnd:
    """How a job ended."""

    state: str  # "SUCCEEDED", "FAILED" or "CANCELLED"
    exit_code: int
    reason: str
    lost: bool = False  # the worker no longer knows the job (it lost its state): it did not really end


class JobHandle:
    """One job at one worker's JobService, seen by its owner."""

    def __init__(self, channel: grpc.aio.Channel, job_id: str, worker_id: str) -> None:
        self.job_id = job_id
        self.worker_id = worker_id
        self._stub = job_pb2_grpc.JobServiceStub(channel)

    async def dispatch(
        self,
        lease_id: str,
        executor: tuple[str, str],
        config: dict[str, Any],
        coordinator_address: str = "",
        *,
        timeout_seconds: float = 0.0,
    ) -> None:
        request = job_pb2.DispatchRequest(
            job_id=self.job_id,
            lease_id=lease_id,
            executor=common_pb2.ExecutorRef(executor_class=executor[0], name=executor[1]),
            config=_struct(config),
            coordinator_address=coordinator_address,
        )
        if timeout_seconds:
            request.timeout.CopyFrom(_duration(timeout_seconds))
        await self._stub.Dispatch(request, timeout=CALL_TIMEOUT_SECONDS)
        log.info("job.dispatched", job_id=self.job_id, worker=self.worker_id, executor="/".join(executor))

    async def wait_end(self) -> JobEnd:
        """Follow the job until it ends (reconnecting while its JobService restarts)."""

        async def watch_once(live: Callable[[], None]) -> JobEnd | None:
            try:
                current = await self._stub.Get(job_pb2.GetRequest(job_id=self.job_id), timeout=CALL_TIMEOUT_SECONDS)
                live()
                if current.job.state in TERMINAL:
                    return _end(current.job)
                async for change in self._stub.Watch(job_pb2.WatchRequest(job_id=self.job_id)):
                    if change.job.job_id == self.job_id and change.job.state in TERMINAL:
                        return _end(change.job)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return JobEnd(
                        "FAILED", -1, f"the worker no longer knows job {self.job_id}: {exc.details()}", lost=True
                    )
                raise
            return None

        return await follow(
            watch_once, name="job", peer=f"job {self.job_id} on {self.worker_id}", policy=WATCH_POLICY, log=log
        )

    async def tail(self, lines: int = 3) -> str:
        """The last lines of the executor's output ("" when they cannot be read)."""
        text = []
        try:
            async for piece in self._stub.Logs(
                job_pb2.LogsRequest(job_id=self.job_id, tail_lines=lines), timeout=CALL_TIMEOUT_SECONDS
            ):
                text.append(piece.text)
        except grpc.aio.AioRpcError:
            return ""
        return "".join(text).strip()

    async def cancel(self, reason: str) -> None:
        """Stop the job (best effort: releasing its lease stops it too)."""
        try:
            await self._stub.Cancel(
                job_pb2.CancelRequest(job_id=self.job_id, reason=reason), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            log.info("job.cancel_failed", job_id=self.job_id, code=exc.code().name, error=exc.details())


def _end(job: job_pb2.Job) -> JobEnd:
    return JobEnd(job_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"), job.exit_code, job.reason)
