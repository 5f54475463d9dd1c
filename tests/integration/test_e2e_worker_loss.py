"""End to end: a training worker dies mid-run (every process of it, SIGKILL). The scheduler notices
its lease can no longer be renewed, drops it, solicits a replacement (a spare worker takes the
job and joins the open round from the run's current θ); the parameter server closes the round
with the survivors by quorum + timeout; the run finishes every round."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from pathlib import Path

import pytest

from tendril.scheduler.cluster import LocalCluster, processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril.scheduler.metrics import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(400)]


def _events(log: Path, event: str) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


async def test_a_lost_worker_is_replaced_and_the_run_finishes(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        spares=1,
        # Every worker has room for a second lease, so whichever worker hosts the parameter
        # server or stands by can take the lost worker's job.
        flexible_workers=3,
        rounds=5,
        inner_steps=15,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="loss",
        round_timeout_seconds=5.0,
        worker_extra=(("lease.renewable_seconds", 4.0),),
        timeout_seconds=300,
    )
    victim: dict[str, str] = {}

    async def kill_a_trainer(cluster: LocalCluster) -> None:
        log = cluster.logs / "scheduler.log"
        deadline = time.monotonic() + 200
        while not (tmp_path / "metrics.jsonl").exists() or not read_metrics(tmp_path / "metrics.jsonl"):
            assert time.monotonic() < deadline, "round 0 never finished"
            await asyncio.sleep(0.2)
        ps_host = next(e["worker"] for e in _events(log, "job.dispatched") if e["executor"] == "aggregate/diloco")
        trainers = [e["worker"] for e in _events(log, "job.dispatched") if e["executor"] == "train/diloco"]
        name = next(w for w in trainers if w != ps_host)
        victim["worker"] = str(name)
        # The whole machine goes: supervisor, its services and its executor.
        for pid in processes_under(cluster.root / str(name)):
            os.kill(pid, signal.SIGKILL)

    result = await run_cluster(settings, during=kill_a_trainer)
    log = (result.cluster_root / "logs" / "scheduler.log").read_text()
    assert result.scheduler_exit == 0, log[-3000:]
    assert processes_under(tmp_path) == []

    lost = victim["worker"]
    assert any(e["worker"] == lost for e in _events(result.cluster_root / "logs" / "scheduler.log", "member.lost"))
    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1, 2, 3, 4]
    assert all(math.isfinite(line["loss_mean"]) for line in lines)
    assert lost in lines[0]["workers"] and lost not in lines[-1]["workers"]
    spare = {"worker-0", "worker-1", "worker-2"} - set(lines[0]["workers"])
    assert spare and spare <= set(lines[-1]["workers"]), lines
    assert (tmp_path / "model.safetensors").stat().st_size > 0
