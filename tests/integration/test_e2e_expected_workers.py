"""End to end: a training worker is lost for good (every process of it, SIGKILL) and nobody can
replace it. The scheduler declares it lost and tells the parameter server which workers it
still expects (SetExpectedWorkers): later rounds close as soon as the survivor committed,
instead of each waiting out the round timeout for a worker that never comes."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tendril.scheduler.cluster import LocalCluster, processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril.scheduler.metrics import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(420)]

ROUND_TIMEOUT = 20.0
ROUNDS = 6


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _at(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(str(event["timestamp"])).timestamp()


async def test_a_lost_worker_is_not_waited_for(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        spares=0,  # nobody can take the lost worker's place
        flexible_workers=1,  # worker-0 hosts the parameter server beside its training job
        rounds=ROUNDS,
        inner_steps=10,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="exp",  # (short: the bridge socket path under tmp_path must fit 107 bytes)
        round_timeout_seconds=ROUND_TIMEOUT,
        worker_extra=(("lease.renewable_seconds", 3.0),),
        timeout_seconds=360,
    )
    victim: dict[str, Any] = {}

    async def kill_a_trainer_for_good(cluster: LocalCluster) -> None:
        log = cluster.logs / "scheduler.log"
        deadline = time.monotonic() + 240
        while len(read_metrics(tmp_path / "metrics.jsonl") if (tmp_path / "metrics.jsonl").exists() else []) < 2:
            assert time.monotonic() < deadline, "round 1 never finished"
            await asyncio.sleep(0.2)
        ps_host = next(e["worker"] for e in _events(log, "job.dispatched") if e["executor"] == "aggregate/diloco")
        trainers = [e["worker"] for e in _events(log, "job.dispatched") if e["executor"] == "train/diloco"]
        name = next(w for w in trainers if w != ps_host)
        victim.update(worker=name, ps_host=ps_host, killed_at=time.time())
        for pid in processes_under(cluster.root / str(name)):
            os.kill(pid, signal.SIGKILL)

    result = await run_cluster(settings, during=kill_a_trainer_for_good)
    root = result.cluster_root
    log = (root / "logs" / "scheduler.log").read_text()
    assert result.scheduler_exit == 0, log[-3000:]
    assert processes_under(tmp_path) == []
    lost, survivor = victim["worker"], victim["ps_host"]
    assert [line["round"] for line in result.lines] == list(range(ROUNDS))

    # The scheduler told the parameter server: first both workers, then only the survivor.
    told = [e["workers"] for e in _events(root / "logs" / "scheduler.log", "expected_workers.told")]
    assert told[0] == sorted([lost, survivor]) and told[-1] == [survivor], told
    ps_log = root / survivor / "state" / "logs" / "paramserver.log"
    assert _events(ps_log, "paramserver.expected_workers")[-1]["workers"] == [survivor]

    # Round times at the parameter server (from one round's close to the next), before and after.
    closed = _events(ps_log, "paramserver.round_closed")
    assert [e["round"] for e in closed] == list(range(ROUNDS))
    times = [_at(e) for e in closed]
    told_at = _at(_events(ps_log, "paramserver.expected_workers")[-1])
    before = [b - a for a, b, e in zip(times, times[1:], closed[1:], strict=False) if len(e["workers"]) == 2]
    after = [b - a for a, b in itertools.pairwise(times) if a >= told_at]
    print(f"round seconds with both workers {before}; after the loss was told {after}")
    assert after, "no round ran after the loss was told"
    assert all(e["workers"] == [survivor] for e in closed if _at(e) > told_at)
    # Each of them closed when the survivor committed: far from the 20 s round timeout.
    assert max(after) < ROUND_TIMEOUT / 2, (before, after)
