"""The multi-host lab: Tendril across network namespaces over tbf-shaped links, and a lab that
leaves nothing behind however it ends.

Needs root and iproute2. Elsewhere these tests skip with the reason; under CI (env CI set) they
fail instead, so that a CI machine that lost the ability never passes them silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tendril.core.channel import open_channel
from tendril.lab.lab import Lab, LabSettings
from tendril.lab.net import LAB_PORTS, RUN_DIR, lab_links, lab_namespaces, lab_pids, namespaces_unavailable
from tendril.lab.train import train
from tendril.scheduler.cluster import processes_under
from tendril.scheduler.demo import DemoSettings
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tests.procs import pids_alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RATE_MBIT = 200.0
LATENCY_MS = 5.0


@pytest.fixture(autouse=True)
def namespaces() -> None:
    why = namespaces_unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to build the lab's network namespaces: {why}")
        pytest.skip(f"the lab cannot create network namespaces here: {why}")


def leftovers(lab_id: str) -> dict[str, list[str]]:
    """What of lab ``lab_id`` still exists on this host (empty lists when nothing)."""
    return {
        "namespaces": lab_namespaces(lab_id),
        "links": lab_links(lab_id),
        "pids": [str(p) for p in lab_pids(lab_id)],
        "record": [str(p) for p in RUN_DIR.glob(f"{lab_id}.json")],
    }


NOTHING = {"namespaces": [], "links": [], "pids": [], "record": []}


async def test_two_workers_train_across_namespaces_over_mtls(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=2,
        inner_steps=6,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="lab",
        timeout_seconds=200.0,
    )
    began = time.monotonic()
    with Lab(tmp_path / "run", LabSettings(workers=2, rate_mbit=RATE_MBIT, tls=True)) as lab:
        lab_id = lab.lab_id
        # The link is shaped: a raw TCP transfer between two hosts runs at the configured rate.
        link = await lab.measure("worker-1", "worker-0", seconds=1.5)
        assert 0.7 * RATE_MBIT <= link["mbit_per_s"] <= 1.1 * RATE_MBIT, link
        run = await train(lab, settings)
        assert run.scheduler_exit == 0, run.scheduler_log
        # Every worker registered the address of its own host, not loopback (worker-1 binds
        # 0.0.0.0: its record comes from worker.advertise_host).
        endpoints = await workers_in_registry(lab)
        assert sorted(endpoints) == ["worker-0", "worker-1"]
        for worker_id, addresses in endpoints.items():
            ip = lab.host(worker_id).ip
            assert all(a.rpartition(":")[0] == ip for a in addresses), (worker_id, addresses)
        jobs_dbs = [tmp_path / "run" / f"worker-{i}" / "state" / "jobs.db" for i in range(2)]
        jobs: list[tuple[str, str, str]] = []
        for path in jobs_dbs:
            with contextlib.closing(sqlite3.connect(path)) as db:
                jobs += db.execute("SELECT owner_id, executor_class, state FROM jobs").fetchall()
    print(f"lab e2e: {time.monotonic() - began:.1f} s; link {link}")
    assert leftovers(lab_id) == NOTHING
    lines = run.lines
    assert [line["round"] for line in lines] == [0, 1]
    for line in lines:
        assert line["workers"] == ["worker-0", "worker-1"] and line["contributors"] == 2
        assert math.isfinite(line["loss_mean"]) and line["bytes_up"] > 0 and line["bytes_down"] > 0
    # Under mTLS each JobService knew the dispatcher by its certificate's CN.
    assert {owner for owner, _, _ in jobs} == {"lab-scheduler"}
    assert sorted(cls for _, cls, _ in jobs) == ["aggregate", "eval", "train", "train"]


async def workers_in_registry(lab: Lab) -> dict[str, list[str]]:
    """worker id -> the service addresses of its registry record, as the gateway lists them."""
    async with open_channel(lab.gateway_address, peer_id="lab-observer") as channel:
        reply = await gateway_pb2_grpc.RegistryServiceStub(channel).List(gateway_pb2.ListRequest(kind="worker"))
    endpoints: dict[str, list[str]] = {}
    for record in reply.records:
        worker = common_pb2.WorkerRecord()
        assert record.payload.Unpack(worker)
        e = worker.endpoints
        endpoints[worker.worker_id] = [e.arbiter, e.lease, e.job, e.data_fetcher, e.parameter_server]
    return endpoints


async def test_the_relay_delays_every_connection_between_hosts(tmp_path: Path) -> None:
    with Lab(tmp_path, LabSettings(workers=1, rate_mbit=RATE_MBIT, tls=True, latency_ms=LATENCY_MS)) as lab:
        link = await lab.measure("gateway", "worker-0", seconds=1.0)
        # gRPC under mTLS through the relay: the worker registers at the gateway on another host.
        await lab.start_gateway()
        await lab.start_workers()
        for _ in range(150):
            if "worker-0" in (found := await workers_in_registry(lab)):
                break
            await asyncio.sleep(0.2)
        relays = [p.name for p in lab.cluster.procs if p.name.startswith("relay-")]
        # The worker's connections to the gateway went through its relay: the rule counted them.
        rules = lab.run("worker-0", ["iptables", "-t", "nat", "-L", "OUTPUT", "-v", "-n", "-x"]).stdout
        redirected = [int(line.split()[0]) for line in rules.splitlines() if "REDIRECT" in line]
    assert len(relays) == 4  # gateway, data, scheduler, worker-0
    assert redirected and redirected[0] > 0, rules
    assert link["rtt_ms"] >= 2 * LATENCY_MS, link
    assert 0.7 * RATE_MBIT <= link["mbit_per_s"] <= 1.1 * RATE_MBIT, link
    assert found["worker-0"][0].startswith(lab.host("worker-0").ip + ":"), found
    assert leftovers(lab.lab_id) == NOTHING


def _reserved_ports(netns: str) -> str:
    argv = ["ip", "netns", "exec", netns, "cat", "/proc/sys/net/ipv4/ip_local_reserved_ports"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


async def test_a_lab_removes_everything_on_a_normal_exit(tmp_path: Path) -> None:
    with Lab(tmp_path, LabSettings(workers=1, tls=True)) as lab:
        await lab.start_gateway()
        found = leftovers(lab.lab_id)
        assert len(found["namespaces"]) == 5 and found["links"] and found["pids"] and found["record"], found
        pids = [int(p) for p in found["pids"]]
        for netns in found["namespaces"]:  # the services' ports are no host's ephemeral ports
            if netns != lab.network.bridge_netns:
                assert _reserved_ports(netns) == LAB_PORTS, netns
    assert leftovers(lab.lab_id) == NOTHING
    assert pids_alive(pids) == []
    assert processes_under(tmp_path) == []


async def test_a_lab_removes_everything_when_its_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab(tmp_path, LabSettings(workers=1, tls=False)) as lab:
        await lab.start_gateway()
        pids = lab_pids(lab.lab_id)
        assert pids
        raise RuntimeError("boom")
    assert leftovers(lab.lab_id) == NOTHING
    assert pids_alive(pids) == []
    assert processes_under(tmp_path) == []


@contextlib.contextmanager
def lab_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, list[int]]]:
    """`python -m tendril.lab up` with a gateway; yields it, its lab id and the pids inside."""
    argv = [sys.executable, "-m", "tendril.lab", "up", "--workers", "1", "--no-tls", "--out", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not first.startswith("lab "):
            first = proc.stdout.readline()
            assert first or proc.poll() is None, f"`lab up` exited with {proc.returncode}"
        lab_id = first.split()[1]
        pids = lab_pids(lab_id)
        assert pids, first
        yield proc, lab_id, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_a_signalled_lab_process_removes_everything(tmp_path: Path, sig: int, code: int) -> None:
    with lab_up(tmp_path) as (proc, lab_id, pids):
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
        assert leftovers(lab_id) == NOTHING
        assert pids_alive(pids) == []
        assert processes_under(tmp_path) == []


def test_lab_clean_removes_what_a_killed_lab_left(tmp_path: Path) -> None:
    with lab_up(tmp_path) as (proc, lab_id, pids):
        proc.kill()  # no handler runs: the namespaces, the link and the gateway stay
        proc.wait(timeout=10)
        assert leftovers(lab_id)["namespaces"]
        cleaned = subprocess.run(
            [sys.executable, "-m", "tendril.lab", "clean"], capture_output=True, text=True, timeout=60, check=False
        )
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"lab {lab_id}: removed" in cleaned.stdout
        assert leftovers(lab_id) == NOTHING
        assert pids_alive(pids) == []


async def test_lab_clean_leaves_a_live_lab_alone(tmp_path: Path) -> None:
    with Lab(tmp_path, LabSettings(workers=1, tls=False)) as lab:
        cleaned = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "tendril.lab", "clean"], capture_output=True, text=True, timeout=60
        )
        assert cleaned.returncode == 0, cleaned.stderr
        assert len(leftovers(lab.lab_id)["namespaces"]) == 5
    assert leftovers(lab.lab_id) == NOTHING
