"""Chaos: the disk of one training worker fills up for 25 s in the middle of a DiLoCo run of
two supervised workers (each worker's state and work dirs on a tmpfs of its own; worker-0 hosts
the parameter server beside its training job, worker-1 trains and takes the blip).

Its job ends (FAILED, recorded once the disk takes it) or carries on, none stays RUNNING; the
worker stops winning offers while it cannot run jobs (its JobService NOT_SERVING, its
registry record withdrawn); within 10 s of the disk coming back it serves again and is back
in the registry, and takes work again when the scheduler asks; the run finishes every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core.channel import open_channel
from tendril.scheduler.cluster import LocalCluster, processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril.scheduler.metrics import read_metrics
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tests.chaos.disks import full, tmpfs

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(420)]

# NOTE: two workers, not three: the test's length is set by the blip, and a third trainer only
# adds CPU work to every round on a 2-core machine.
WORKERS = 2
# NOTE: the goal is 25-60 s. The run must outlast the blip (and the worker's return) on an idle
# machine too, where a round of INNER_STEPS with the one trainer left takes about 1.1 s (1.3 s
# at load average 4); on a busy machine rounds take 2-3 times as long and the test as much longer.
BLIP_SECONDS = 25.0
ROUNDS = 32
INNER_STEPS = 45
BACK_WITHIN_SECONDS = 10.0
ROUND_TIMEOUT_SECONDS = 10.0
JOB_NAME = "tendril.job.v1.JobService"


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _rounds(metrics: Path) -> int:
    return len(read_metrics(metrics)) if metrics.exists() else 0


def _status(cluster: LocalCluster, worker: str) -> dict[str, Any]:
    path = cluster.root / worker / "state" / "run" / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


async def _job_serving(address: str) -> bool | None:
    """The JobService's answer under its name: True SERVING, False NOT_SERVING, None no answer."""
    try:
        async with open_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=JOB_NAME), timeout=2
            )
    except grpc.aio.AioRpcError:
        return None
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _registered(gateway: str, worker: str) -> bool:
    async with open_channel(gateway) as channel:
        try:
            await gateway_pb2_grpc.RegistryServiceStub(channel).Get(
                gateway_pb2.GetRequest(kind="worker", id=worker), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
    return True


@contextlib.contextmanager
def _disks(root: Path) -> Iterator[None]:
    """A tmpfs under each worker's folder of the cluster (run_cluster empties, never removes them)."""
    with contextlib.ExitStack() as stack:
        for i in range(WORKERS):
            stack.enter_context(tmpfs(root / f"worker-{i}", "256m"))
        yield


async def test_a_disk_blip_on_a_training_worker(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=WORKERS,
        rounds=ROUNDS,
        inner_steps=INNER_STEPS,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="db",
        round_timeout_seconds=ROUND_TIMEOUT_SECONDS,
        worker_extra=(("lease.renewable_seconds", 4.0),),
        timeout_seconds=260,
    )
    seen: dict[str, Any] = {}

    async def blip(cluster: LocalCluster) -> None:
        log = cluster.logs / "scheduler.log"
        metrics = tmp_path / "metrics.jsonl"
        deadline = time.monotonic() + 200
        while _rounds(metrics) < 1:
            assert time.monotonic() < deadline, "round 0 never finished"
            await asyncio.sleep(0.2)
        dispatched = _events(log, "job.dispatched")
        ps = next(str(e["worker"]) for e in dispatched if e["executor"] == "aggregate/diloco")
        victim = next(str(e["worker"]) for e in dispatched if str(e["worker"]) != ps)
        job_address = _status(cluster, victim)["children"]["job"]["address"]
        gateway = str(tomllib.loads((cluster.root / "job.toml").read_text())["scheduler"]["gateway"])
        seen.update(victim=victim, ps=ps, round_at_fill=_rounds(metrics))
        disk = cluster.root / victim
        with full(disk):
            filled = time.monotonic()
            seen["filled_at"] = time.time()
            while await _job_serving(job_address) is not False:
                assert time.monotonic() - filled < 10, "the JobService never said NOT_SERVING"
                await asyncio.sleep(0.1)
            seen["unready_after"] = time.monotonic() - filled
            while await _registered(gateway, victim):
                assert time.monotonic() - filled < 10, "the registry record was not withdrawn"
                await asyncio.sleep(0.1)
            seen["withdrawn_after"] = time.monotonic() - filled
            await asyncio.sleep(max(0.0, BLIP_SECONDS - (time.monotonic() - filled)))
        freed = time.monotonic()
        seen["freed_at"] = time.time()
        seen["round_at_free"] = _rounds(metrics)
        while not (await _job_serving(job_address) and await _registered(gateway, victim)):
            assert time.monotonic() - freed < 30, "the worker did not come back"
            await asyncio.sleep(0.1)
        seen["back_after"] = time.monotonic() - freed

    with _disks(tmp_path / "run"):
        result = await run_cluster(settings, during=blip)
    scheduler_log = result.cluster_root / "logs" / "scheduler.log"
    assert result.scheduler_exit == 0, scheduler_log.read_text()[-3000:]
    assert processes_under(tmp_path) == []
    assert "back_after" in seen, f"the blip did not run to its end: {seen}"
    lines = result.lines
    assert [line["round"] for line in lines] == list(range(settings.rounds)), "every round ran, none twice"

    victim = seen["victim"]
    dispatched = _events(scheduler_log, "job.dispatched")
    ended = {e["job_id"]: e for e in _events(scheduler_log, "job.ended")}
    lost = _events(scheduler_log, "member.lost")
    # None stays RUNNING: every job the scheduler dispatched ended (or was dropped by it when lost).
    dropped = {e["job_id"] for e in lost}
    assert {e["job_id"] for e in dispatched} <= set(ended) | dropped, (dispatched, ended, lost)
    victim_jobs = [e for e in dispatched if e["worker"] == victim]
    first = victim_jobs[0]["job_id"]
    outcome = ended.get(first, {}).get("state", "DROPPED" if first in dropped else "?")
    # Taken back: a job dispatched to the victim after the disk came back, when it needed one.
    again = [e for e in victim_jobs[1:] if _at(e) >= seen["freed_at"]]
    rejoined = f"{_at(again[0]) - seen['freed_at']:.2f} s" if again else "not needed"
    if outcome != "SUCCEEDED":
        assert again, f"{victim} took no job again after its disk came back: {victim_jobs}"
        assert _at(again[0]) - seen["freed_at"] < BACK_WITHIN_SECONDS + 5, rejoined
    before = [e for e in victim_jobs if _at(e) < seen["freed_at"]]
    assert len(before) == 1, f"{victim} won a job while its disk was full: {victim_jobs}"
    # Its JobService recorded the end in jobs.db once the disk took it (never left RUNNING).
    job_log = result.cluster_root / victim / "state" / "logs" / "job.log"
    unrecorded = {e["job_id"] for e in _events(job_log, "job.end_not_recorded")}
    recorded = {e["job_id"] for e in _events(job_log, "job.end_recorded")}
    assert unrecorded <= recorded, (unrecorded, recorded)
    print(
        f"\nchaos: disk of {victim} (training worker; PS on {seen['ps']}) full for {BLIP_SECONDS:.0f} s from "
        f"round {seen['round_at_fill']}: JobService NOT_SERVING after {seen['unready_after']:.2f} s, registry record "
        f"withdrawn after {seen['withdrawn_after']:.2f} s; its job {first} {outcome}; disk back at round "
        f"{seen['round_at_free']}: SERVING and registered again after {seen['back_after']:.2f} s, a job dispatched "
        f"to it again after {rejoined}; {len(lost)} member(s) lost; run of {len(lines)} rounds in "
        f"{result.seconds:.0f} s; load average {os.getloadavg()[0]:.2f}; "
        f"rounds {[round(w['wall_seconds'], 1) for w in lines]}"
    )
    assert seen["back_after"] < BACK_WITHIN_SECONDS


def _at(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
