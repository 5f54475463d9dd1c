"""End to end over two gateways: a reference-scheduler DiLoCo run (the demo's tiny model, two
workers) on a network of two gateways over one redis-server, every peer given both addresses;
the gateway they all use is SIGKILLed mid-run and the run still completes its rounds."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from pathlib import Path

import pytest

from tendril.scheduler.cluster import LocalCluster, processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tests.redis_server import redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(240)]


async def test_a_run_completes_while_the_gateway_in_use_is_killed(tmp_path: Path) -> None:
    killed_after: list[int] = []  # rounds in metrics.jsonl when gateway-0 died

    async def kill_first_gateway(cluster: LocalCluster) -> None:
        metrics = tmp_path / "metrics.jsonl"
        while True:  # the first round closed
            if metrics.exists() and metrics.read_text().strip():
                break
            await asyncio.sleep(0.1)
        gateway = next(p for p in cluster.procs if p.name == "gateway-0")
        os.killpg(gateway.popen.pid, signal.SIGKILL)
        killed_after.append(len(metrics.read_text().splitlines()))

    with redis_server(tmp_path / "redis") as redis:
        settings = DemoSettings(
            out=tmp_path,
            workers=2,
            rounds=3,
            inner_steps=4,
            max_bytes=300_000,
            sequences_per_slice=64,
            run_id="e2e-gw",
            timeout_seconds=150,
            gateways=2,
            redis_url=redis.url,
        )
        began = time.monotonic()
        result = await run_cluster(settings, during=kill_first_gateway)
        print(f"e2e over two gateways: {time.monotonic() - began:.1f} s, gateway-0 killed after round {killed_after}")
    logs = result.cluster_root / "logs"
    assert result.scheduler_exit == 0, (logs / "scheduler.log").read_text()[-3000:]
    assert killed_after and killed_after[0] < settings.rounds, "gateway-0 died mid-run"
    assert [line["round"] for line in result.lines] == [0, 1, 2]
    for line in result.lines:
        assert line["contributors"] == 2 and math.isfinite(line["loss_mean"])
    # every worker and the data node moved to gateway-1 (their registry refreshes did)
    for name in ("worker-0", "worker-1", "data-node"):
        assert "gateway.moved" in (logs / f"{name}.log").read_text(errors="replace"), name
    assert result.killed == []
    assert processes_under(tmp_path) == []
