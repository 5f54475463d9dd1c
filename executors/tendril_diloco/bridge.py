"""The executor's client of its job bridge (JobBridgeService on the job's Unix socket).

Every call carries ``authorization: Bearer $TENDRIL_BRIDGE_TOKEN``. Calls that fail because a
service behind the bridge is briefly away (UNAVAILABLE) are retried with backoff for up to
``retry_seconds``; every other error is the caller's to handle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tendril.core.channel import open_channel
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2

T = TypeVar("T")

KINDS = {
    "batch": scheduler_pb2.PROGRESS_KIND_BATCH,
    "metrics": scheduler_pb2.PROGRESS_KIND_METRICS,
    "update_sent": scheduler_pb2.PROGRESS_KIND_UPDATE_SENT,
    "update_received": scheduler_pb2.PROGRESS_KIND_UPDATE_RECEIVED,
    "finished": scheduler_pb2.PROGRESS_KIND_FINISHED,
}


@dataclasses.dataclass(frozen=True)
class Directive:
    """The scheduler's answer to a progress report."""

    kind: str  # "continue", "schedule_update" or "done"
    batches_until_update: int
    round: int


_DIRECTIVES = {
    scheduler_pb2.DIRECTIVE_UNSPECIFIED: "continue",
    scheduler_pb2.DIRECTIVE_CONTINUE: "continue",
    scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE: "schedule_update",
    scheduler_pb2.DIRECTIVE_DONE: "done",
}


class Bridge:
    """Typed calls to the job bridge; paths in and out are relative to the work dir."""

    def __init__(self, socket_path: str, token: str, work_dir: Path, *, retry_seconds: float = 60.0) -> None:
        self.work_dir = work_dir
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = open_channel(f"unix:{socket_path}")
        self._stub = bridge_pb2_grpc.JobBridgeServiceStub(self._channel)
        self._retry_seconds = retry_seconds

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, fn: Callable[..., Awaitable[T]], request: Any, *, timeout: float | None = 60.0) -> T:
        deadline = time.monotonic() + self._retry_seconds
        delay = 0.2
        while True:
            try:
                return await fn(request, metadata=self._metadata, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def get_job(self) -> bridge_pb2.GetJobResponse:
        return await self._call(self._stub.GetJob, bridge_pb2.GetJobRequest(), timeout=10.0)

    async def next_slice(self) -> Path:
        reply = await self._call(self._stub.NextSlice, bridge_pb2.NextSliceRequest(), timeout=600.0)
        return self.work_dir / reply.path

    async def publish_parameters(self, rel: str) -> tuple[bool, int]:
        reply = await self._call(
            self._stub.PublishParameters, bridge_pb2.PublishParametersRequest(path=rel), timeout=600.0
        )
        return reply.accepted, reply.round

    async def fetch_parameters(self, rel: str) -> tuple[Path, int]:
        reply = await self._call(self._stub.FetchParameters, bridge_pb2.FetchParametersRequest(path=rel), timeout=600.0)
        return self.work_dir / reply.path, reply.round

    async def send_update(self, rel: str, round_index: int, weight: float) -> tuple[int, float]:
        request = bridge_pb2.SendUpdateRequest(path=rel, round=round_index, weight=weight)
        reply = await self._call(self._stub.SendUpdate, request, timeout=600.0)
        return reply.bytes_sent, reply.seconds

    async def receive_update(self, round_index: int, timeout: float) -> tuple[Path, int, float, int]:
        request = bridge_pb2.ReceiveUpdateRequest(round=round_index, timeout_seconds=timeout)
        reply = await self._call(self._stub.ReceiveUpdate, request, timeout=timeout + 60.0)
        return self.work_dir / reply.path, reply.bytes_received, reply.seconds, reply.contributors

    async def report(
        self,
        kind: str,
        round_index: int,
        *,
        batch_size: int = 0,
        batch_seconds: float = 0.0,
        metrics: Mapping[str, float] | None = None,
    ) -> Directive:
        progress = scheduler_pb2.ReportProgressRequest(
            kind=KINDS[kind],
            round=round_index,
            batch_size=batch_size,
            batch_seconds=batch_seconds,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
        )
        reply = await self._call(
            self._stub.ReportProgress, bridge_pb2.ReportProgressRequest(progress=progress), timeout=30.0
        )
        d = reply.directive
        return Directive(_DIRECTIVES.get(d.directive, "continue"), d.batches_until_update, d.round)
