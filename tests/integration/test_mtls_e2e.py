"""End to end under mTLS: a DiLoCo run where every TCP hop presents a certificate of one CA.

Gateway, data node, two supervised workers (their services, DataFetchers, parameter server and
the aggregate executor) and the reference scheduler each run with their own certificate (CN =
their peer id); only the job bridges stay on their plaintext Unix sockets. If any channel or
server were still plaintext, its peer's calls would fail with UNAVAILABLE and no round would
finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tendril.certs.ops import Issued, init_ca, issue
from tendril.core import tls
from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, WorkerSpec, pick_offsets, worker_ports
from tendril.scheduler.demo import DemoSettings, job_toml, prepare_data
from tendril.scheduler.metrics import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

START_SECONDS = 120.0
RUN_SECONDS = 200.0


def tls_flags(issued: Issued) -> list[str]:
    return ["--tls-ca", str(issued.ca_file), "--tls-cert", str(issued.paths.cert), "--tls-key", str(issued.paths.key)]


def tls_keys(issued: Issued) -> tuple[tuple[str, str], ...]:
    section = issued.tls()
    return tuple((f"tls.{field}", getattr(section, field)) for field in section.FILE_KEYS)


@pytest.fixture
def observer(tmp_path: Path) -> Iterator[Path]:
    """A CA in tmp_path/pki; this test process calls (health checks) with an "observer" certificate."""
    pki = tmp_path / "pki"
    init_ca(pki)
    tls.configure(issue(pki, "observer").tls())
    try:
        yield pki
    finally:
        tls.configure(None)


async def test_two_workers_train_over_mtls(tmp_path: Path, observer: Path) -> None:
    pki = observer
    settings = DemoSettings(
        out=tmp_path, workers=2, rounds=2, inner_steps=6, max_bytes=300_000, sequences_per_slice=64, run_id="tls"
    )
    began = time.monotonic()
    data = prepare_data(settings)
    cluster = LocalCluster(tmp_path / "run")
    try:
        gateway = free_address()
        argv = [sys.executable, "-m", "tendril.cli", "gateway", "run", "--listen", gateway]
        proc = cluster.spawn("gateway", [*argv, *tls_flags(issue(pki, "gateway"))])
        await cluster.wait_serving(proc, [gateway], START_SECONDS)

        data_node = free_address()
        argv = [sys.executable, "-m", "tendril.data_node", "serve", str(data), "--listen", data_node]
        proc = cluster.spawn("data-node", [*argv, "--gateway", gateway, *tls_flags(issue(pki, "data-node"))])
        await cluster.wait_serving(proc, [data_node], START_SECONDS)

        specs = [
            WorkerSpec(
                f"worker-{i}", offset, "flexible" if i == 0 else "whole", extra=tls_keys(issue(pki, f"worker-{i}"))
            )
            for i, offset in enumerate(pick_offsets(settings.workers))
        ]
        procs = [cluster.start_worker(spec, gateway) for spec in specs]
        for spec, proc in zip(specs, procs, strict=True):
            await cluster.wait_serving(proc, worker_ports(spec.port_offset)[:5], START_SECONDS)

        job = tmp_path / "run" / "job.toml"
        job.write_text(job_toml(settings, listen=free_address(), gateway=gateway, data_node=data_node))
        argv = [sys.executable, "-m", "tendril.scheduler", "run", "--config", str(job)]
        scheduler = cluster.spawn("scheduler", [*argv, *tls_flags(issue(pki, "tls-scheduler"))])
        try:
            code: int | None = await asyncio.to_thread(scheduler.popen.wait, RUN_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        killed = cluster.stop()
    print(f"mTLS e2e: {time.monotonic() - began:.1f} s from nothing to a stopped cluster")
    assert code == 0, scheduler.tail(40)
    assert killed == []
    lines = read_metrics(tmp_path / "metrics.jsonl")
    assert [line["round"] for line in lines] == [0, 1]
    for line in lines:
        assert line["workers"] == ["worker-0", "worker-1"] and line["contributors"] == 2
        assert math.isfinite(line["loss_mean"]) and line["bytes_up"] > 0 and line["bytes_down"] > 0
    # Each JobService knew the dispatcher by its certificate's CN (the scheduler id); the
    # parameter server's aggregate job and the training jobs all ran and ended.
    jobs: list[tuple[str, str, str]] = []
    for spec in specs:
        with contextlib.closing(sqlite3.connect(tmp_path / "run" / spec.worker_id / "state" / "jobs.db")) as db:
            jobs += db.execute("SELECT owner_id, executor_class, state FROM jobs").fetchall()
    assert {owner for owner, _, _ in jobs} == {"tls-scheduler"}
    assert sorted(cls for _, cls, _ in jobs) == ["aggregate", "eval", "train", "train"]
