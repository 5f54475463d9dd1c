"""A worker whose disk fails for a while takes no jobs meanwhile and is back soon after.

Lone worker, its state and work dirs on a tmpfs: the disk is filled up, then made read-only,
then the header of jobs.db is overwritten under the running JobService. Each time: the
JobService answers NOT_SERVING under its name, refuses dispatches (UNAVAILABLE
CANNOT_RUN_JOBS), the Arbiter makes no offer, the worker's registry record is withdrawn and a
job that ends meanwhile reads as ended (not RUNNING); once the disk is back, all of it is
undone within 10 s. (The same during a DiLoCo run: test_disk_blip_run.py.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tests.chaos.disks import full, read_only, tmpfs
from tests.integration.live_worker import SCHEDULER, dispatch, live_worker, renewable_lease, wait_all_serving
from tests.scheduler_double import SchedulerDouble, reject

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(180)]

JOB_NAME = "tendril.job.v1.JobService"
BACK_WITHIN_SECONDS = 10.0
FAULT_SECONDS = 3.0  # how long each fault lasts here (the 25-60 s blip runs in test_disk_blip_run.py)


async def _job_health(config: WorkerConfig) -> int:
    async with open_channel(config.listen("job")) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=JOB_NAME), timeout=5
        )
    return int(reply.status)


async def _registered(config: WorkerConfig) -> bool:
    async with open_channel(config.gateway.embedded_listen) as channel:
        try:
            await gateway_pb2_grpc.RegistryServiceStub(channel).Get(
                gateway_pb2.GetRequest(kind="worker", id=config.worker_id), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            return False
    return True


async def _offer(sched: SchedulerDouble, config: WorkerConfig) -> arbiter_pb2.Offer:
    return await sched.solicit(config.listen("arbiter"), sched.request(cpu=1, bid=150), timeout=15)


async def _dispatch_refused(config: WorkerConfig, lease_id: str, job_id: str) -> grpc.aio.AioRpcError:
    async with open_channel(config.listen("job"), peer_id=SCHEDULER) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await job_pb2_grpc.JobServiceStub(channel).Dispatch(
                job_pb2.DispatchRequest(
                    job_id=job_id,
                    lease_id=lease_id,
                    executor=common_pb2.ExecutorRef(executor_class="example", name="echo"),
                ),
                timeout=10,
            )
    return refused.value


async def _cancel(config: WorkerConfig, job_id: str) -> job_pb2.Job:
    async with open_channel(config.listen("job"), peer_id=SCHEDULER) as channel:
        stub = job_pb2_grpc.JobServiceStub(channel)
        await stub.Cancel(job_pb2.CancelRequest(job_id=job_id, reason="chaos"), timeout=30)
        return (await stub.Get(job_pb2.GetRequest(job_id=job_id), timeout=10)).job


async def _eventually(check: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until the coroutine function ``check`` returns True."""
    began = time.monotonic()
    while not await check():  # type: ignore[misc]
        assert time.monotonic() - began < timeout, f"timed out after {timeout}s waiting for: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - began


@contextmanager
def _damaged_header(db: Path) -> Iterator[None]:
    """jobs.db's first bytes overwritten in place (the running service keeps its open file)."""
    with open(db, "r+b") as f:
        header = f.read(16)
        f.seek(0)
        f.write(b"not a database!!")
    try:
        yield
    finally:
        with open(db, "r+b") as f:
            f.write(header)


async def test_a_worker_whose_disk_fails_takes_no_jobs_and_is_back_within_10s(tmp_path: Path) -> None:
    measured: list[str] = []
    with tmpfs(tmp_path / "disk", "256m") as disk:
        overrides = {"worker__state_dir": str(disk / "state"), "worker__work_dir": str(disk / "work")}
        with live_worker(tmp_path, **overrides) as worker:
            config = worker.config
            await wait_all_serving(worker)
            async with SchedulerDouble(SCHEDULER, decide=reject()) as sched:
                assert (await _offer(sched, config)).state == arbiter_pb2.OFFER_STATE_REJECTED  # offers are made
                lease = await renewable_lease(config)
                await dispatch(config, lease.lease_id, "before-1")
                faults: list[tuple[str, Callable[[], AbstractContextManager[None]]]] = [
                    ("disk full", lambda: full(disk)),
                    ("read-only", lambda: read_only(disk)),
                    ("jobs.db header overwritten", lambda: _damaged_header(disk / "state" / "jobs.db")),
                ]
                for number, (name, fault) in enumerate(faults):
                    with fault():
                        unready = await _eventually(
                            lambda: _is(config, health_pb2.HealthCheckResponse.NOT_SERVING), 10, f"{name}: NOT_SERVING"
                        )
                        await _eventually(lambda: _not(_registered(config)), 10, f"{name}: registry record withdrawn")
                        offer = await _offer(sched, config)
                        assert offer.state == arbiter_pb2.OFFER_STATE_DROPPED, offer
                        assert "this worker cannot run jobs now" in offer.reason, offer.reason
                        refused = await _dispatch_refused(config, lease.lease_id, f"during-{number}")
                        assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused
                        assert "cannot run jobs now" in (refused.details() or ""), refused.details()
                        if number == 0:
                            # A job that ends while the disk is full reads as ended, never RUNNING.
                            ended = await _cancel(config, "before-1")
                            assert ended.state == job_pb2.JOB_STATE_CANCELLED, ended
                        await asyncio.sleep(FAULT_SECONDS)
                    back = await _eventually(
                        lambda: _is(config, health_pb2.HealthCheckResponse.SERVING), 15, f"{name}: SERVING again"
                    )
                    back = max(back, await _eventually(lambda: _registered(config), 15, f"{name}: registered again"))
                    offer = await _offer(sched, config)
                    assert offer.state == arbiter_pb2.OFFER_STATE_REJECTED, offer  # an offer was made again
                    measured.append(
                        f"{name}: NOT_SERVING after {unready:.2f} s; after the recovery SERVING and registered "
                        f"again after {back:.2f} s"
                    )
                    assert back < BACK_WITHIN_SECONDS, measured[-1]
                # The end written while the disk was full is in jobs.db now.
                assert "job.end_recorded" in (config.state_dir / "logs" / "job.log").read_text()
                async with open_channel(config.listen("job")) as channel:
                    job = (await job_pb2_grpc.JobServiceStub(channel).Get(job_pb2.GetRequest(job_id="before-1"))).job
                assert job.state == job_pb2.JOB_STATE_CANCELLED
                for name in ("job", "arbiter", "lease"):
                    assert worker.child(name)["restarts"] == 0, f"{name} was restarted"
    print("\n" + "\n".join(measured))


async def _is(config: WorkerConfig, status: int) -> bool:
    try:
        return await _job_health(config) == status
    except grpc.aio.AioRpcError:
        return False


async def _not(check: object) -> bool:
    return not await check  # type: ignore[misc]
