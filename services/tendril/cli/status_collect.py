"""Ask a worker's services what `tendril status` shows: health, leases, jobs, capacity, cache.

Every call runs at the same time with its own deadline, so one service that hangs costs the
whole command at most one timeout; a call that fails leaves its section empty with the error
in :attr:`Snapshot.errors` (a service that is down is a finding, never a traceback).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.cli.status_model import (
    DOWN,
    Amount,
    CacheStats,
    Capacity,
    JobRow,
    LeaseRow,
    ServiceHealth,
    Snapshot,
    SupervisorInfo,
)
from tendril.cli.worker_target import ServiceTarget, WorkerTarget
from tendril.core.channel import open_channel
from tendril.core.timeutil import from_timestamp
from tendril_proto.common.v1 import common_pb2
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc

# The caller id operator tools send (read-only calls: any id may make them).
OPERATOR_PEER_ID = "tendril-cli"
DEFAULT_JOB_LIMIT = 10

T = TypeVar("T")


def rpc_error_text(error: grpc.aio.AioRpcError) -> str:
    """``CODE: details`` of a failed call, on one line."""
    details = " ".join((error.details() or "").split())
    if error.code() == grpc.StatusCode.UNAVAILABLE and "Connection refused" in details:
        # NOTE: gRPC's text names every address it tried; "refused" is all an operator needs.
        details = "connection refused (nothing listens there: the process is down or on another port)"
    return f"{error.code().name}: {details}" if details else error.code().name


def amount(msg: common_pb2.Resources) -> Amount:
    return Amount(cpu=msg.cpu, memory_gib=msg.memory_gib, storage_gib=msg.storage_gib, gpu=msg.gpu)


def lease_row(lease: lease_pb2.Lease, now: float) -> LeaseRow:
    kind = lease_pb2.LeaseKind.Name(lease.kind).removeprefix("LEASE_KIND_").lower()
    return LeaseRow(
        lease_id=lease.lease_id,
        owner_id=lease.owner_id,
        kind=kind,
        expires_in_seconds=from_timestamp(lease.expires_at) - now,
        resources=amount(lease.resources),
        price=lease.price,
        request_id=lease.request_id,
    )


def job_row(job: job_pb2.Job, now: float) -> JobRow:
    state = job_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    ended = job.state in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED)
    return JobRow(
        job_id=job.job_id,
        state=state,
        executor=f"{job.executor.executor_class}/{job.executor.name}",
        owner_id=job.owner_id,
        lease_id=job.lease_id,
        age_seconds=max(0.0, now - from_timestamp(job.created_at)) if job.HasField("created_at") else 0.0,
        progress=dict(sorted(job.progress.items())),
        exit_code=job.exit_code if ended else None,
        reason=job.reason,
    )


def cache_stats(reply: data_pb2.GetStatsResponse) -> CacheStats:
    return CacheStats(
        hits=reply.cache_hits,
        misses=reply.cache_misses,
        cached_bytes=reply.cache_bytes,
        capacity_bytes=reply.cache_capacity_bytes,
        downloaded_bytes=reply.bytes_downloaded,
        wait_seconds=reply.wait_seconds,
        sha256_mismatches=reply.sha256_mismatches,
        open_jobs=reply.open_jobs,
        resumed_fetches=reply.resumed_fetches,
        evictions=reply.evictions,
    )


def supervisor_info(target: WorkerTarget) -> SupervisorInfo | None:
    status = target.supervisor
    if status is None:
        return None
    pid = status.get("supervisor_pid")
    return SupervisorInfo(
        pid=pid if isinstance(pid, int) else None,
        alive=target.supervisor_alive,
        state=str(status.get("state", "unknown")),
        registered=bool(status.get("registered")),
        started_at=status.get("started_at"),
        serving_at=status.get("serving_at"),
        status_path=str(target.status_path),
    )


async def _health(service: ServiceTarget, timeout: float) -> tuple[str, str]:
    async with open_channel(service.address, peer_id=OPERATOR_PEER_ID) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service.health_name), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            return DOWN, rpc_error_text(exc)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), ""


def service_health(service: ServiceTarget, health: str, error: str, target: WorkerTarget) -> ServiceHealth:
    row = ServiceHealth(service.name, service.address, health, error)
    child = ((target.supervisor or {}).get("children") or {}).get(service.name)
    if isinstance(child, dict) and target.supervisor_alive:
        row.state = child.get("state")
        row.pid = child.get("pid")
        row.restarts = child.get("restarts")
        row.last_exit_code = child.get("last_exit_code")
        if child.get("ready") is False and not row.error:
            row.error = "cannot run jobs: state or work dir full or read-only, or jobs.db failing (see its log)"
    return row


async def _call(
    address: str, section: str, errors: dict[str, str], call: Callable[[grpc.aio.Channel], Awaitable[T]]
) -> T | None:
    """Run ``call`` on a channel to ``address``; on failure note the error under ``section``."""
    async with open_channel(address, peer_id=OPERATOR_PEER_ID) as channel:
        try:
            return await call(channel)
        except grpc.aio.AioRpcError as exc:
            errors[section] = f"{rpc_error_text(exc)} (at {address})"
            return None


async def collect(target: WorkerTarget, *, timeout: float, job_limit: int = DEFAULT_JOB_LIMIT) -> Snapshot:
    """One snapshot of ``target``; never raises for a service that is down or refuses."""
    errors: dict[str, str] = {}
    names = {s.name for s in target.services}

    async def leases(channel: grpc.aio.Channel) -> Any:
        stub = lease_pb2_grpc.LeaseServiceStub(channel)
        return await asyncio.gather(
            stub.List(lease_pb2.ListRequest(), timeout=timeout),
            stub.GetCapacity(lease_pb2.GetCapacityRequest(), timeout=timeout),
        )

    async def jobs(channel: grpc.aio.Channel) -> job_pb2.ListResponse:
        stub = job_pb2_grpc.JobServiceStub(channel)
        return await stub.List(job_pb2.ListRequest(limit=job_limit), timeout=timeout)

    async def stats(channel: grpc.aio.Channel) -> data_pb2.GetStatsResponse:
        stub = data_pb2_grpc.DataFetcherServiceStub(channel)
        return await stub.GetStats(data_pb2.GetStatsRequest(), timeout=timeout)

    async def absent() -> None:
        return None

    health_task = asyncio.gather(*(_health(s, timeout) for s in target.services))
    lease_task = _call(target.address("lease"), "lease", errors, leases) if "lease" in names else absent()
    jobs_task = _call(target.address("job"), "job", errors, jobs) if "job" in names else absent()
    stats_task = (
        _call(target.address("data_fetcher"), "data_cache", errors, stats) if "data_fetcher" in names else absent()
    )
    healths, lease_replies, job_reply, stats_reply = await asyncio.gather(
        health_task, lease_task, jobs_task, stats_task
    )
    now = time.time()
    snapshot = Snapshot(
        worker_id=target.worker_id,
        location="remote" if target.remote else "local",
        taken_at=now,
        services=[service_health(s, h, e, target) for s, (h, e) in zip(target.services, healths, strict=True)],
        supervisor=supervisor_info(target),
        note=target.note,
        errors=errors,
    )
    if lease_replies is not None:
        listed, capacity = lease_replies
        snapshot.leases = [lease_row(lease, now) for lease in listed.leases]
        snapshot.capacity = Capacity(amount(capacity.total), amount(capacity.reserved), amount(capacity.free))
    if job_reply is not None:
        snapshot.jobs = [job_row(job, now) for job in job_reply.jobs]
    if stats_reply is not None:
        snapshot.data_cache = cache_stats(stats_reply)
    return snapshot
