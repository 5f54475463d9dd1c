"""Chaos: during one DiLoCo run of three supervised workers, one service of a worker is killed
(SIGKILL) in each round, in turn: the LeaseService and later the JobService of the worker that
hosts the parameter-server job, the DataFetcher of a training worker, the ParameterServer (the
round open), the Arbiter of another training worker. The supervisor starts each again; the
restarted JobService re-adopts the aggregate job (and the training job beside it) with their
bridges. The run finishes with every round, no job lost or dispatched again, and no round
more than one round timeout slower than the others."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tendril.scheduler.cluster import LocalCluster, processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril.scheduler.metrics import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(300)]

ROUND_TIMEOUT_SECONDS = 10.0
INTO_THE_ROUND_SECONDS = 0.7  # a kill lands this long after the previous round closed
# (service, whose): "ps" is the worker hosting the parameter-server job, "a" and "b" the others.
KILLS = (("lease", "ps"), ("data_fetcher", "a"), ("paramserver", "ps"), ("arbiter", "b"), ("job", "ps"))
ROUNDS = len(KILLS) + 2  # one clean round before the first kill and one after the last


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _status(cluster: LocalCluster, worker: str) -> dict[str, Any]:
    path = cluster.root / worker / "state" / "run" / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


@dataclasses.dataclass
class Kill:
    service: str
    worker: str
    killed_at: float = 0.0  # wall clock
    back_at: float = 0.0
    restart_seconds: float = 0.0
    jobs_there: int = 0


def _rounds(metrics: Path) -> int:
    return len(read_metrics(metrics)) if metrics.exists() else 0


async def _rounds_done(metrics: Path, count: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while _rounds(metrics) < count:
        assert time.monotonic() < deadline, f"round {count - 1} never finished"
        await asyncio.sleep(0.1)


async def _kill(cluster: LocalCluster, kill: Kill) -> None:
    """SIGKILL one child of a worker; wait until its supervisor shows a new process serving."""
    child = _status(cluster, kill.worker)["children"][kill.service]
    os.kill(child["pid"], signal.SIGKILL)
    began = time.monotonic()
    kill.killed_at = time.time()
    while True:
        again = _status(cluster, kill.worker).get("children", {}).get(kill.service, {})
        if again.get("state") == "serving" and again.get("pid") not in (None, child["pid"]):
            break
        assert time.monotonic() - began < 30, f"the supervisor of {kill.worker} did not restart its {kill.service}"
        await asyncio.sleep(0.05)
    kill.restart_seconds = time.monotonic() - began
    kill.back_at = time.time()


async def test_one_service_killed_in_each_round(tmp_path: Path) -> None:
    """Nothing lost (the test name and run id are short: the bridge socket path must fit 107 bytes)."""
    settings = DemoSettings(
        out=tmp_path,
        workers=3,
        rounds=ROUNDS,
        inner_steps=30,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="ck",
        round_timeout_seconds=ROUND_TIMEOUT_SECONDS,
        timeout_seconds=260,
    )
    kills: list[Kill] = []

    async def kill_one_service_per_round(cluster: LocalCluster) -> None:
        log = cluster.logs / "scheduler.log"
        metrics = tmp_path / "metrics.jsonl"
        await _rounds_done(metrics, 1, 200)
        dispatched = _events(log, "job.dispatched")
        ps = next(str(e["worker"]) for e in dispatched if e["executor"] == "aggregate/diloco")
        others = sorted({str(e["worker"]) for e in dispatched} - {ps})
        whose = {"ps": ps, "a": others[0], "b": others[-1]}
        for done, (service, who) in enumerate(KILLS, start=1):
            await _rounds_done(metrics, done, 60)
            await asyncio.sleep(INTO_THE_ROUND_SECONDS)
            kill = Kill(service, whose[who])
            if service == "job":
                kill.jobs_there = len([e for e in _events(log, "job.dispatched") if e["worker"] == kill.worker])
            kills.append(kill)
            await _kill(cluster, kill)

    result = await run_cluster(settings, during=kill_one_service_per_round)
    scheduler_log = result.cluster_root / "logs" / "scheduler.log"
    assert result.scheduler_exit == 0, scheduler_log.read_text()[-3000:]
    assert processes_under(tmp_path) == []
    assert [k.service for k in kills] == [s for s, _ in KILLS], f"not every service was killed: {kills}"

    lines = result.lines
    assert [line["round"] for line in lines] == list(range(ROUNDS)), "every round ran, none twice"
    assert all(line["contributors"] == 3 for line in lines), [line["contributors"] for line in lines]
    # No job lost: nothing dropped, nothing dispatched again, every job ended SUCCEEDED.
    assert _events(scheduler_log, "member.lost") == []
    dispatched = _events(scheduler_log, "job.dispatched")
    # the training jobs, the parameter server's aggregate job and the held-out evaluation job
    executors = sorted(e["executor"] for e in dispatched)
    assert executors == ["aggregate/diloco", "eval/diloco", *["train/diloco"] * settings.workers], dispatched
    ended = _events(scheduler_log, "job.ended")
    assert len(ended) == len(dispatched) and {e["state"] for e in ended} == {"SUCCEEDED"}, ended
    # The restarted JobService re-adopted every job of that worker.
    job_kill = next(k for k in kills if k.service == "job")
    job_log = result.cluster_root / job_kill.worker / "state" / "logs" / "job.log"
    readopted = _events(job_log, "job.readopted")
    assert len(readopted) == job_kill.jobs_there, readopted

    # Per kill, the rounds that were open while the service was down (from the scheduler's round
    # ends), and what they took beyond the median of the rounds no kill touched.
    walls = [line["wall_seconds"] for line in lines]
    closed = {
        int(e["round"]): datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        for e in _events(scheduler_log, "round.finished")
    }

    def open_during(kill: Kill) -> list[int]:
        return [r for r in range(ROUNDS) if closed[r] - walls[r] <= kill.back_at and closed[r] >= kill.killed_at]

    touched = {r for k in kills for r in open_during(k)}
    typical = statistics.median([w for r, w in enumerate(walls) if r not in touched] or walls)
    report = []
    for kill in kills:
        hit = open_during(kill)
        assert hit, f"no round was open while the {kill.service} of {kill.worker} was down"
        extra = sum(walls[r] - typical for r in hit)
        report.append(
            f"  {kill.service} of {kill.worker}{' (PS host)' if kill.worker == job_kill.worker else ''}: "
            f"serving again after {kill.restart_seconds:.2f} s; round(s) {hit} took "
            f"{[walls[r] for r in hit]} s (extra {extra:+.2f} s)"
        )
        assert extra <= ROUND_TIMEOUT_SECONDS, f"{report[-1]}: more than a round timeout"
    print(
        f"\nchaos: one service SIGKILLed per round, median untouched round {typical:.2f} s, whole run "
        f"{result.seconds:.0f} s, load average {os.getloadavg()[0]:.2f}; rounds {[round(w, 2) for w in walls]}\n"
        + "\n".join(report)
    )
