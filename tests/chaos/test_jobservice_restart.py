"""Chaos: the JobService of the worker that hosts the parameter-server job is killed (SIGKILL)
in the middle of a DiLoCo run of three supervised workers. The supervisor starts it again; it
re-adopts the aggregate job (and the training job beside it) with their bridges, and the run
finishes with every round, no job lost or dispatched again, and the round of the crash at most
one round timeout slower than the others."""

from __future__ import annotations

import asyncio
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

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

ROUNDS = 5
ROUND_TIMEOUT_SECONDS = 10.0


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


async def test_sigkill_ps_job_service(tmp_path: Path) -> None:
    """Nothing lost (the test name and run id are short: the bridge socket path must fit 107 bytes)."""
    settings = DemoSettings(
        out=tmp_path,
        workers=3,
        rounds=ROUNDS,
        inner_steps=30,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="cj",
        round_timeout_seconds=ROUND_TIMEOUT_SECONDS,
        timeout_seconds=240,
    )
    seen: dict[str, Any] = {}

    async def kill_the_ps_job_service(cluster: LocalCluster) -> None:
        log = cluster.logs / "scheduler.log"
        metrics = tmp_path / "metrics.jsonl"
        deadline = time.monotonic() + 200
        while not metrics.exists() or not read_metrics(metrics):
            assert time.monotonic() < deadline, "round 0 never finished"
            await asyncio.sleep(0.2)
        host = next(e["worker"] for e in _events(log, "job.dispatched") if e["executor"] == "aggregate/diloco")
        seen["host"] = host
        await asyncio.sleep(1.0)  # into the round
        child = _status(cluster, str(host))["children"]["job"]
        seen["jobs_there"] = len([e for e in _events(log, "job.dispatched") if e["worker"] == host])
        os.kill(child["pid"], signal.SIGKILL)
        killed = time.monotonic()
        seen["killed_at"] = time.time()
        while True:
            again = _status(cluster, str(host)).get("children", {}).get("job", {})
            if again.get("state") == "serving" and again.get("pid") not in (None, child["pid"]):
                break
            assert time.monotonic() - killed < 30, "the supervisor did not restart the JobService"
            await asyncio.sleep(0.05)
        seen["restart_seconds"] = time.monotonic() - killed
        seen["back_at"] = time.time()

    result = await run_cluster(settings, during=kill_the_ps_job_service)
    scheduler_log = result.cluster_root / "logs" / "scheduler.log"
    assert result.scheduler_exit == 0, scheduler_log.read_text()[-3000:]
    assert processes_under(tmp_path) == []
    assert "host" in seen, "the JobService was never killed"

    lines = result.lines
    assert [line["round"] for line in lines] == list(range(ROUNDS)), "every round ran, none twice"
    assert all(line["contributors"] == 3 for line in lines), [line["contributors"] for line in lines]
    # No job lost: nothing dropped, nothing dispatched again, every job ended SUCCEEDED.
    assert _events(scheduler_log, "member.lost") == []
    dispatched = _events(scheduler_log, "job.dispatched")
    assert len(dispatched) == settings.workers + 1, dispatched
    ended = _events(scheduler_log, "job.ended")
    assert len(ended) == len(dispatched) and {e["state"] for e in ended} == {"SUCCEEDED"}, ended
    # The restarted JobService re-adopted every job of that worker.
    job_log = result.cluster_root / str(seen["host"]) / "state" / "logs" / "job.log"
    readopted = _events(job_log, "job.readopted")
    assert len(readopted) == seen["jobs_there"], readopted

    # The rounds that were open while the JobService was down, from the scheduler's round ends.
    walls = [line["wall_seconds"] for line in lines]
    closed = {
        int(e["round"]): datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        for e in _events(scheduler_log, "round.finished")
    }
    hit = [r for r in range(ROUNDS) if closed[r] - walls[r] <= seen["back_at"] and closed[r] >= seen["killed_at"]]
    assert hit, "no round was open while the JobService was down"
    typical = statistics.median(w for r, w in enumerate(walls) if r not in hit)
    extra = sum(walls[r] - typical for r in hit)
    print(
        f"\nchaos: JobService of {seen['host']} (the parameter server's host, {seen['jobs_there']} jobs) "
        f"SIGKILLed: serving again after {seen['restart_seconds']:.2f} s; round(s) {hit} open meanwhile took "
        f"{[walls[r] for r in hit]} s against a median of {typical:.2f} s for the others (extra {extra:+.2f} s); "
        f"whole run {result.seconds:.0f} s; rounds {[round(w, 2) for w in walls]}"
    )
    assert extra <= ROUND_TIMEOUT_SECONDS, f"the crash cost {extra:.1f} s, more than a round timeout"
