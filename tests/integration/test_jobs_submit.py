"""`tendril jobs submit` against a gateway and two real workers: a job's results come back
(checked against the manifest); a job whose worker is SIGKILLed is retried on the other worker
and its results arrive once; SIGINT cancels the job and releases its lease."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig, shift_port
from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, WorkerSpec, pick_offsets, processes_under
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_proto.submit.v1 import submit_pb2, submit_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
WORKERS = ("w-a", "w-b")


def _job_toml(gateway: str, config: str, *, name: str = "demo", retries: int = 2) -> str:
    return f"""
name = "{name}"
id = "tester"
bid = 100.0
retries = {retries}
[executor]
class = "example"
name = "echo"
[resources]
cpu = 1.0
memory_gib = 0.5
[config]
{config}
[network]
gateway = "{gateway}"
listen = "{free_address()}"
republish_seconds = 1.0
allocation_timeout_seconds = 60.0
"""


@pytest.fixture
async def network() -> AsyncIterator[tuple[LocalCluster, str, dict[str, int]]]:
    # NOTE: a short root: a job's bridge socket path must fit a Unix socket (107 bytes).
    root = Path(tempfile.mkdtemp(prefix="tjs-", dir="/tmp"))
    cluster = LocalCluster(root)
    gateway = free_address()
    offsets = dict(zip(WORKERS, pick_offsets(len(WORKERS)), strict=True))
    try:
        gw = cluster.start_gateway(gateway)
        await cluster.wait_serving(gw, [gateway], 30)
        extra = (("lease.renewable_seconds", 3.0),)
        for worker_id, offset in offsets.items():
            proc = cluster.start_worker(WorkerSpec(worker_id, offset, cpu=1.0, extra=extra), gateway)
            job = shift_port(WorkerConfig().job.listen, offset)
            await cluster.wait_serving(proc, [job, shift_port(WorkerConfig().arbiter.listen, offset)], 60)
        yield cluster, gateway, offsets
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _submit(tmp_path: Path, text: str, out: Path) -> subprocess.Popen[bytes]:
    job = tmp_path / "job.toml"
    job.write_text(text)
    args = [sys.executable, "-m", "tendril.cli", "jobs", "submit", str(job), "--out", str(out)]
    with open(tmp_path / "submit.out", "wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


async def _finish(proc: subprocess.Popen[bytes], tmp_path: Path, timeout: float) -> str:
    await asyncio.to_thread(proc.wait, timeout)
    return (tmp_path / "submit.out").read_text()


async def _jobs(offset: int, peer: str = "tester") -> list[job_pb2.Job]:
    async with open_channel(shift_port(WorkerConfig().job.listen, offset), peer_id=peer) as channel:
        reply = await job_pb2_grpc.JobServiceStub(channel).List(job_pb2.ListRequest(), timeout=10)
    return list(reply.jobs)


async def _wait_output(tmp_path: Path, needle: str, timeout: float) -> str:
    """Wait until the submitter's output holds ``needle``; returns the line holding it."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = (tmp_path / "submit.out").read_text()
        for line in seen.splitlines():
            if needle in line:
                return line
        await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared; output so far:\n{seen}")


async def test_a_job_runs_and_its_results_come_back(
    tmp_path: Path, network: tuple[LocalCluster, str, dict[str, int]]
) -> None:
    _, gateway, offsets = network
    out = tmp_path / "got"
    config = 'results = { "answer.txt" = "42\\n", "sub/more.txt" = "more" }'
    proc = _submit(tmp_path, _job_toml(gateway, config), out)
    output = await _finish(proc, tmp_path, 120)
    assert proc.returncode == 0, output
    assert (out / "answer.txt").read_text() == "42\n"
    assert (out / "sub" / "more.txt").read_text() == "more"
    assert f"results in {out}" in output
    assert "ended SUCCEEDED" in output and "[example]" in output  # the executor's log was printed
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".got.part-")]
    # The worker deleted its copy once it was fetched; the owner alone may ask.
    ran = [(w, j) for w, o in offsets.items() for j in await _jobs(o)]
    assert len(ran) == 1
    worker_id, job = ran[0]
    async with open_channel(shift_port(WorkerConfig().job.listen, offsets[worker_id]), peer_id="tester") as ch:
        stub = job_pb2_grpc.JobServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.ListResults(job_pb2.ListResultsRequest(job_id=job.job_id), timeout=10)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    async with open_channel(shift_port(WorkerConfig().job.listen, offsets[worker_id]), peer_id="other") as ch:
        stub = job_pb2_grpc.JobServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.ListResults(job_pb2.ListResultsRequest(job_id=job.job_id), timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_job_whose_worker_dies_is_retried_elsewhere_and_its_results_arrive_once(
    tmp_path: Path, network: tuple[LocalCluster, str, dict[str, int]]
) -> None:
    cluster, gateway, offsets = network
    out = tmp_path / "got"
    config = 'sleep_seconds = 6.0\nresults = { "answer.txt" = "42" }'
    proc = _submit(tmp_path, _job_toml(gateway, config), out)
    line = await _wait_output(tmp_path, "dispatched: job", 60)
    victim = line.split(" on ")[1].split(" ")[0]
    worker = next(p for p in cluster.procs if p.name == victim)
    os.killpg(worker.popen.pid, signal.SIGKILL)
    for pid in processes_under(cluster.root / victim):
        os.kill(pid, signal.SIGKILL)
    output = await _finish(proc, tmp_path, 120)
    assert proc.returncode == 0, output
    assert "retry 1:" in output, output
    assert (out / "answer.txt").read_text() == "42"
    assert sorted(p.name for p in out.iterdir()) == ["answer.txt"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".got.part-")]
    survivor = next(w for w in WORKERS if w != victim)
    jobs = await _jobs(offsets[survivor])
    assert [j.state for j in jobs] == [job_pb2.JOB_STATE_SUCCEEDED]
    assert jobs[0].job_id.endswith("-a1")


async def test_sigint_cancels_the_job_and_releases_the_lease(
    tmp_path: Path, network: tuple[LocalCluster, str, dict[str, int]]
) -> None:
    _, gateway, offsets = network
    proc = _submit(tmp_path, _job_toml(gateway, "sleep_seconds = 60.0"), tmp_path / "got")
    line = await _wait_output(tmp_path, "dispatched: job", 60)
    worker_id = line.split(" on ")[1].split(" ")[0]
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    output = await _finish(proc, tmp_path, 60)
    assert proc.returncode == 130, output
    jobs = await _jobs(offsets[worker_id])
    assert [j.state for j in jobs] == [job_pb2.JOB_STATE_CANCELLED], jobs
    lease_address = shift_port(WorkerConfig().lease.listen, offsets[worker_id])
    async with open_channel(lease_address, peer_id=worker_id) as channel:
        leases = await lease_pb2_grpc.LeaseServiceStub(channel).List(lease_pb2.ListRequest(), timeout=10)
    assert [lease for lease in leases.leases if lease.owner_id == "tester"] == [], leases
    assert not (tmp_path / "got").exists()


async def test_submit_service_streams_the_events_and_returns_the_results(
    tmp_path: Path, network: tuple[LocalCluster, str, dict[str, int]]
) -> None:
    cluster, gateway, _ = network
    listen = free_address()
    args = ["jobs", "serve", "--listen", listen, "--gateway", gateway, "--id", "tester", "--out", str(tmp_path / "srv")]
    serve = cluster.spawn("serve", [sys.executable, "-m", "tendril.cli", *args], tier=3)
    await cluster.wait_serving(serve, [listen], 30)
    text = _job_toml(gateway, 'results = { "answer.txt" = "42" }')
    events = []
    async with open_channel(listen, peer_id="client") as channel:
        stub = submit_pb2_grpc.SubmitServiceStub(channel)
        async for event in stub.Submit(submit_pb2.SubmitRequest(job_toml=text), timeout=120):
            events.append(event)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[:2] == ["offer_taken", "dispatched"] and kinds[-2:] == ["results_fetched", "done"], kinds
    assert "log" in kinds
    done = events[-1].done
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED
    assert [f.path for f in done.manifest.files] == ["answer.txt"]
    assert (Path(done.results_path) / "answer.txt").read_text() == "42"
    assert Path(done.results_path).parent == tmp_path / "srv"
    async with open_channel(listen, peer_id="client") as channel:
        stub = submit_pb2_grpc.SubmitServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            async for _ in stub.Submit(submit_pb2.SubmitRequest(job_toml="[executor]\nclass = 1"), timeout=30):
                pass
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "executor.class" in (bad.value.details() or "")
