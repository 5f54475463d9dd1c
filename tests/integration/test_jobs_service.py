"""JobService as a real process, with a real LeaseService process and the example executor.

The test acts as the worker (to create leases: Reserve/Confirm with the worker's id) and as
the owning scheduler (to renew, release, dispatch and cancel with its own id). A JobService
killed with SIGKILL and started again re-adopts the executors that still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from google.protobuf import struct_pb2

from tendril.bridge.auth import bearer
from tendril.core.channel import open_channel
from tendril.core.config import ExecutorConfig, WorkerConfig
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tests.procs import kill_group, pids_alive, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

OWNER = "sched-it"
TERMINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}

# An executor on the SDK that calls its bridge (GetJob) every 0.1 s for config.seconds, through
# the SDK's retry of UNAVAILABLE, and says how many calls it made and how long the longest took.
PINGER = """
import asyncio, json, sys, time
from tendril_sdk import BridgeClient

async def main() -> int:
    async with BridgeClient.from_env() as bridge:
        job = await bridge.get_job()
        deadline = time.monotonic() + float(job.config["seconds"])
        calls, longest = 0, 0.0
        while time.monotonic() < deadline:
            began = time.monotonic()
            await bridge.get_job()
            calls, longest = calls + 1, max(longest, time.monotonic() - began)
            open("pings.json", "w").write(json.dumps({"calls": calls, "longest": longest}))
            await asyncio.sleep(0.1)
    print(f"pinger: {calls} calls, the longest took {longest:.2f} s", flush=True)
    return int(job.config.get("exit_code", 0))

sys.exit(asyncio.run(main()))
"""


class Worker:
    """A LeaseService and a JobService process on free ports, plus client helpers."""

    def __init__(self, tmp: Path, **overrides: Any) -> None:
        self.tmp = tmp
        self.config: WorkerConfig = worker_config(tmp, **overrides)
        self.config.executors.append(ExecutorConfig("test", "pinger", [sys.executable, "-c", PINGER]))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.leases_proc: subprocess.Popen[bytes] | None = None
        self.jobs_proc: subprocess.Popen[bytes] | None = None

    async def start_leases(self) -> None:
        self.leases_proc = spawn_service("lease", self.config, self.tmp)
        self.procs.append(self.leases_proc)
        await wait_serving(self.config.listen("lease"))

    async def start_jobs(self) -> None:
        self.jobs_proc = spawn_service("job", self.config, self.tmp)
        self.procs.append(self.jobs_proc)
        await wait_serving(self.config.listen("job"))

    def channel(self, section: str, peer: str = OWNER) -> grpc.aio.Channel:
        return open_channel(self.config.listen(section), peer_id=peer)

    async def lease(self) -> str:
        """A renewable lease owned by OWNER (reserved and confirmed as the worker would)."""
        async with self.channel("lease", self.config.worker_id) as ch:
            stub = lease_pb2_grpc.LeaseServiceStub(ch)
            reserved = await stub.Reserve(
                lease_pb2.ReserveRequest(
                    owner_id=OWNER, resources=common_pb2.Resources(cpu=1, memory_gib=1), price=100, ttl_seconds=1
                )
            )
            confirmed = await stub.Confirm(lease_pb2.ConfirmRequest(lease_id=reserved.lease.lease_id))
            return confirmed.lease.lease_id

    async def dispatch(self, job_id: str, lease_id: str, peer: str = OWNER, **config: Any) -> job_pb2.Job:
        request = job_pb2.DispatchRequest(
            job_id=job_id,
            lease_id=lease_id,
            executor=common_pb2.ExecutorRef(
                executor_class=config.pop("executor_class", "example"), name=config.pop("executor_name", "echo")
            ),
            config=_struct(config),
        )
        async with self.channel("job", peer) as ch:
            return (await job_pb2_grpc.JobServiceStub(ch).Dispatch(request, timeout=30)).job

    async def get(self, job_id: str) -> job_pb2.Job:
        async with self.channel("job") as ch:
            return (await job_pb2_grpc.JobServiceStub(ch).Get(job_pb2.GetRequest(job_id=job_id))).job

    async def wait_end(self, job_id: str, timeout: float = 30.0) -> job_pb2.Job:
        async def watch() -> job_pb2.Job:
            async with self.channel("job") as ch:
                async for event in job_pb2_grpc.JobServiceStub(ch).Watch(job_pb2.WatchRequest(job_id=job_id)):
                    if event.job.state in TERMINAL:
                        return event.job
            raise AssertionError(f"watch of {job_id} ended before the job did")

        return await asyncio.wait_for(watch(), timeout)

    async def logs(self, job_id: str, **kw: Any) -> str:
        async with self.channel("job") as ch:
            stub = job_pb2_grpc.JobServiceStub(ch)
            return "".join([r.text async for r in stub.Logs(job_pb2.LogsRequest(job_id=job_id, **kw), timeout=30)])

    def log_count(self, event: str) -> int:
        """How many log lines of the JobService process name ``event``."""
        path = self.tmp / "job.log"
        return path.read_text().count(f'"event": "{event}"') if path.exists() else 0

    def work_dir(self, job_id: str) -> Path:
        return self.config.work_dir / f"job-{job_id}"

    async def kill_jobs(self) -> float:
        """SIGKILL the JobService process (a crash); returns when it is gone (time.monotonic())."""
        assert self.jobs_proc is not None
        os.kill(self.jobs_proc.pid, signal.SIGKILL)
        await asyncio.to_thread(self.jobs_proc.wait, 10)
        return time.monotonic()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                kill_group(proc, signal.SIGTERM)
            kill_group(proc)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def executor_pids(work_dir: Path) -> list[int]:
    """Processes started for a job (they carry WORK_DIR=<its work dir> in their environment)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("WORK_DIR") == str(work_dir) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
    return found


async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    # (job.fetch_roots: the example executor fetches test files from tmp_path)
    w = Worker(tmp_path, job__kill_grace_seconds=3, job__fetch_roots=str(tmp_path))
    try:
        await w.start_leases()
        await w.start_jobs()
        yield w
    finally:
        w.close()


async def test_example_job_succeeds_and_bad_dispatches_leave_nothing(worker: Worker, tmp_path: Path) -> None:
    lease_id = await worker.lease()
    resource = tmp_path / "input.txt"
    resource.write_text("resource for the example executor\n")
    job = await worker.dispatch("ok-1", lease_id, fetch=f"file://{resource}")
    assert job.state == job_pb2.JOB_STATE_RUNNING and job.owner_id == OWNER
    ended = await worker.wait_end("ok-1")
    assert ended.state == job_pb2.JOB_STATE_SUCCEEDED and ended.exit_code == 0, ended.reason
    text = await worker.logs("ok-1")
    assert "[example] job ok-1 on worker worker-test" in text
    assert "fetched file://" in text and "artifacts/input.txt" in text and "exiting with code 0" in text
    assert await worker.logs("ok-1", tail_lines=1) == text.splitlines(keepends=True)[-1]
    assert not worker.work_dir("ok-1").exists()

    failing = await worker.dispatch("fail-1", lease_id, exit_code=7)
    assert failing.state == job_pb2.JOB_STATE_RUNNING
    ended = await worker.wait_end("fail-1")
    assert ended.state == job_pb2.JOB_STATE_FAILED and ended.exit_code == 7 and "code 7" in ended.reason

    bad_cases = [
        ({"executor_class": "nope"}, lease_id, OWNER, grpc.StatusCode.FAILED_PRECONDITION),
        ({}, lease_id, "intruder", grpc.StatusCode.PERMISSION_DENIED),
        ({}, "no-such-lease", OWNER, grpc.StatusCode.NOT_FOUND),
    ]
    for config, lease, peer, code in bad_cases:
        err = await rpc_error(worker.dispatch("bad-1", lease, peer=peer, **config))
        assert err.code() == code, err.details()
        assert not worker.work_dir("bad-1").exists()
        missing = await rpc_error(worker.get("bad-1"))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(worker.dispatch("bad/id", lease_id))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "1-64 characters" in err.details()
    dup = await rpc_error(worker.dispatch("ok-1", lease_id))
    assert dup.code() == grpc.StatusCode.ALREADY_EXISTS
    assert sorted(p.name for p in worker.config.work_dir.iterdir()) == []

    async with worker.channel("job") as ch:
        listed = await job_pb2_grpc.JobServiceStub(ch).List(job_pb2.ListRequest())
    assert [j.job_id for j in listed.jobs] == ["fail-1", "ok-1"]


async def test_results_are_kept_listed_fetched_by_offset_and_deleted(worker: Worker) -> None:
    lease_id = await worker.lease()
    await worker.dispatch("res-1", lease_id, results={"answer.txt": "42", "sub/b.txt": "bee"}, sleep_seconds=1.0)
    async with worker.channel("job") as ch:
        stub = job_pb2_grpc.JobServiceStub(ch)
        running = await rpc_error(stub.ListResults(job_pb2.ListResultsRequest(job_id="res-1")))
        assert running.code() == grpc.StatusCode.FAILED_PRECONDITION, running.details()
        ended = await worker.wait_end("res-1")
        assert ended.state == job_pb2.JOB_STATE_SUCCEEDED, ended.reason
        manifest = (await stub.ListResults(job_pb2.ListResultsRequest(job_id="res-1"))).manifest
        assert [(f.path, f.size_bytes) for f in manifest.files] == [("answer.txt", 2), ("sub/b.txt", 3)]
        chunks = [c async for c in stub.FetchResult(job_pb2.FetchResultRequest(job_id="res-1", path="sub/b.txt"))]
        assert [(c.offset, c.data, c.size_bytes) for c in chunks] == [(0, b"bee", 3)]
        resumed = stub.FetchResult(job_pb2.FetchResultRequest(job_id="res-1", path="answer.txt", offset=1))
        assert [(c.offset, c.data) async for c in resumed] == [(1, b"2")]
        bad = [
            (job_pb2.FetchResultRequest(job_id="res-1", path="../job.json"), grpc.StatusCode.INVALID_ARGUMENT),
            (job_pb2.FetchResultRequest(job_id="res-1", path="answer.txt", offset=3), grpc.StatusCode.INVALID_ARGUMENT),
            (job_pb2.FetchResultRequest(job_id="res-1", path="nope.txt"), grpc.StatusCode.NOT_FOUND),
            (job_pb2.FetchResultRequest(job_id="no-such-job", path="a"), grpc.StatusCode.NOT_FOUND),
        ]
        for request, code in bad:
            err = await rpc_error(_drain(stub.FetchResult(request)))
            assert err.code() == code, (request, err.details())
        freed = await stub.DeleteResults(job_pb2.DeleteResultsRequest(job_id="res-1"))
        assert freed.freed_bytes == 5
        gone = await rpc_error(stub.ListResults(job_pb2.ListResultsRequest(job_id="res-1")))
        assert gone.code() == grpc.StatusCode.NOT_FOUND
    async with worker.channel("job", "intruder") as ch:
        denied = await rpc_error(
            job_pb2_grpc.JobServiceStub(ch).DeleteResults(job_pb2.DeleteResultsRequest(job_id="res-1"))
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_bridge_token_cancel_and_owner_check(worker: Worker) -> None:
    lease_id = await worker.lease()
    await worker.dispatch("c-1", lease_id, sleep_seconds=120)
    work = worker.work_dir("c-1")
    await wait_for(lambda: (work / "result.json").exists(), what="the executor to write result.json")
    pids = executor_pids(work)
    assert len(pids) == 1
    socket_path = work / "bridge.sock"
    assert oct(socket_path.stat().st_mode & 0o777) == "0o600" and oct(work.stat().st_mode & 0o777) == "0o700"

    token = psutil.Process(pids[0]).environ()["TENDRIL_BRIDGE_TOKEN"]
    async with open_channel(f"unix:{socket_path}") as ch:
        bridge = bridge_pb2_grpc.JobBridgeServiceStub(ch)
        wrong = await rpc_error(bridge.GetJob(bridge_pb2.GetJobRequest(), metadata=bearer("guessed")))
        assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
        none = await rpc_error(bridge.GetJob(bridge_pb2.GetJobRequest()))
        assert none.code() == grpc.StatusCode.UNAUTHENTICATED
        right = await bridge.GetJob(bridge_pb2.GetJobRequest(), metadata=bearer(token))
        assert right.job_id == "c-1"

    async with worker.channel("job", "intruder") as ch:
        denied = await rpc_error(job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="c-1")))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    begun = time.monotonic()
    async with worker.channel("job") as ch:
        reply = await job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="c-1", reason="enough"))
    assert time.monotonic() - begun < 3, "the example executor stops at once on SIGTERM"
    assert reply.job.state == job_pb2.JOB_STATE_CANCELLED and reply.job.reason == "enough"
    assert reply.job.exit_code == 143
    assert pids_alive(pids) == [] and not work.exists()
    assert "SIGTERM: stopping now" in await worker.logs("c-1")


async def test_unrenewed_lease_cancels_its_job(tmp_path: Path) -> None:
    w = Worker(tmp_path, lease__renewable_seconds=2, job__kill_grace_seconds=3)
    try:
        await w.start_leases()
        await w.start_jobs()
        lease_id = await w.lease()
        confirmed_at = time.monotonic()
        await w.dispatch("e-1", lease_id, sleep_seconds=120)
        work = w.work_dir("e-1")
        await wait_for(lambda: executor_pids(work), what="the executor to start")
        pids = executor_pids(work)
        ended = await w.wait_end("e-1", timeout=30)
        after = time.monotonic() - confirmed_at
        assert ended.state == job_pb2.JOB_STATE_CANCELLED and f"lease {lease_id} expired" in ended.reason
        # renewable 2 s + prune 0.25 s + SIGTERM handling; generous for a loaded machine.
        assert after < 8, f"cancelled {after:.2f} s after the lease was confirmed"
        assert pids_alive(pids) == [] and not work.exists()
        err = await rpc_error(w.dispatch("e-2", lease_id))
        assert err.code() == grpc.StatusCode.NOT_FOUND
    finally:
        w.close()


async def test_lease_watch_survives_a_lease_service_restart(worker: Worker) -> None:
    lease_id = await worker.lease()
    await worker.dispatch("r-1", lease_id, sleep_seconds=120)
    assert worker.leases_proc is not None
    os.kill(worker.leases_proc.pid, signal.SIGKILL)
    worker.leases_proc.wait(timeout=10)
    await worker.start_leases()
    # The JobService reconnects its watch (it logs "leases.watching" each time it is connected);
    # a release through the new process then reaches it as a RELEASED event.
    await wait_for(lambda: worker.log_count("leases.watching") >= 2, what="the lease watch to reconnect")
    async with worker.channel("lease") as ch:
        await lease_pb2_grpc.LeaseServiceStub(ch).Release(lease_pb2.ReleaseRequest(lease_id=lease_id))
    ended = await worker.wait_end("r-1", timeout=30)
    assert ended.state == job_pb2.JOB_STATE_CANCELLED and "released" in ended.reason


async def test_kill9_of_the_job_service_readopts_its_running_job(worker: Worker) -> None:
    """A JobService killed with SIGKILL while a job runs: the executor runs on, the restarted
    JobService re-adopts it with its bridge (same socket, same token), and the job ends with the
    executor's own exit code. (This test used to check the opposite: the job was killed and
    ended FAILED "job service restarted".)"""
    lease_id = await worker.lease()
    await worker.dispatch("k-1", lease_id, executor_class="test", executor_name="pinger", seconds=8)
    await worker.dispatch("k-ex", lease_id, sleep_seconds=5)  # the example executor
    work = worker.work_dir("k-1")
    await wait_for(lambda: (work / "pings.json").exists(), what="the executor to call its bridge")
    await wait_for(lambda: (worker.work_dir("k-ex") / "result.json").exists(), what="the example executor")
    pids = executor_pids(work)
    token = psutil.Process(pids[0]).environ()["TENDRIL_BRIDGE_TOKEN"]
    killed = await worker.kill_jobs()
    assert pids_alive(pids) == pids, "the executor outlives its JobService (under its shim)"
    await asyncio.sleep(1.0)  # the executor's bridge calls fail meanwhile (retried by the SDK)
    await worker.start_jobs()
    back = time.monotonic() - killed
    for job_id in ("k-1", "k-ex"):
        job = await worker.get(job_id)
        assert job.state == job_pb2.JOB_STATE_RUNNING, job.reason
    assert worker.log_count("job.readopted") == 2
    async with open_channel(f"unix:{work / 'bridge.sock'}") as ch:
        again = await bridge_pb2_grpc.JobBridgeServiceStub(ch).GetJob(
            bridge_pb2.GetJobRequest(), metadata=bearer(token)
        )
    assert again.job_id == "k-1", "the rebuilt bridge takes the executor's token"
    ended = await worker.wait_end("k-1")
    assert ended.state == job_pb2.JOB_STATE_SUCCEEDED and ended.exit_code == 0, ended.reason
    text = await worker.logs("k-1")
    assert "pinger:" in text, text
    longest = float(text.split("the longest took ")[1].split(" s")[0])
    print(
        f"\nJobService SIGKILL -> serving again {back:.2f} s (1 s of it waited on purpose); "
        f"the executor's longest bridge call {longest:.2f} s"
    )
    assert longest >= 1.0, "a call did wait through the restart"
    assert pids_alive(pids) == [] and not work.exists()
    example = await worker.wait_end("k-ex")
    assert example.state == job_pb2.JOB_STATE_SUCCEEDED and example.exit_code == 0, example.reason
    assert "exiting with code 0" in await worker.logs("k-ex")
    await worker.dispatch("k-2", lease_id)
    assert (await worker.wait_end("k-2")).state == job_pb2.JOB_STATE_SUCCEEDED


async def test_an_executor_that_exits_while_the_job_service_is_down_keeps_its_exit_code(worker: Worker) -> None:
    lease_id = await worker.lease()
    await worker.dispatch("x-1", lease_id, sleep_seconds=1.5, exit_code=7)
    work = worker.work_dir("x-1")
    await wait_for(lambda: (work / "result.json").exists(), what="the executor to talk to its bridge")
    pids = executor_pids(work)
    await worker.kill_jobs()
    await wait_for(lambda: not pids_alive(pids), what="the executor to exit on its own")
    await wait_for(lambda: (work / "exit.json").exists(), what="its shim to record the exit")
    await worker.start_jobs()
    job = await worker.get("x-1")
    assert job.state == job_pb2.JOB_STATE_FAILED and job.exit_code == 7
    assert job.reason == "the executor exited with code 7 while the JobService was down"
    assert "exiting with code 7" in await worker.logs("x-1")
    assert not work.exists()


async def test_readopted_jobs_cancel_and_stop_with_the_service(worker: Worker) -> None:
    lease_id = await worker.lease()
    for job_id in ("c-1", "c-2"):
        await worker.dispatch(job_id, lease_id, sleep_seconds=120)
    works = {j: worker.work_dir(j) for j in ("c-1", "c-2")}
    await wait_for(lambda: all((w / "result.json").exists() for w in works.values()), what="executors")
    pids = {j: executor_pids(w) for j, w in works.items()}
    await worker.kill_jobs()
    await worker.start_jobs()
    assert worker.log_count("job.readopted") == 2
    begun = time.monotonic()
    async with worker.channel("job") as ch:
        reply = await job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="c-1", reason="enough"))
    assert time.monotonic() - begun < 3, "Cancel reaches a re-adopted executor at once"
    assert reply.job.state == job_pb2.JOB_STATE_CANCELLED and reply.job.exit_code == 143
    assert pids_alive(pids["c-1"]) == [] and not works["c-1"].exists()
    assert "SIGTERM: stopping now" in await worker.logs("c-1")

    assert worker.jobs_proc is not None
    begun = time.monotonic()
    worker.jobs_proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.jobs_proc.wait, 15)
    assert time.monotonic() - begun < 10 and code == 0
    assert pids_alive(pids["c-2"]) == []
    await worker.start_jobs()
    job = await worker.get("c-2")
    assert job.state == job_pb2.JOB_STATE_CANCELLED and "stopping" in job.reason


async def test_a_lease_that_ended_while_the_job_service_was_down_cancels_its_job(worker: Worker) -> None:
    lease_id = await worker.lease()
    await worker.dispatch("l-1", lease_id, sleep_seconds=120)
    work = worker.work_dir("l-1")
    await wait_for(lambda: (work / "result.json").exists(), what="the executor to talk to its bridge")
    pids = executor_pids(work)
    await worker.kill_jobs()
    async with worker.channel("lease") as ch:
        await lease_pb2_grpc.LeaseServiceStub(ch).Release(lease_pb2.ReleaseRequest(lease_id=lease_id))
    await worker.start_jobs()
    ended = await worker.wait_end("l-1", timeout=30)
    assert ended.state == job_pb2.JOB_STATE_CANCELLED and f"lease {lease_id} is no longer live" in ended.reason
    assert pids_alive(pids) == []


async def test_sigterm_stops_every_job_within_10_seconds(worker: Worker) -> None:
    lease_id = await worker.lease()
    for job_id in ("g-1", "g-2"):
        await worker.dispatch(job_id, lease_id, sleep_seconds=120)
    await wait_for(lambda: all(executor_pids(worker.work_dir(j)) for j in ("g-1", "g-2")), what="executors")
    pids = executor_pids(worker.work_dir("g-1")) + executor_pids(worker.work_dir("g-2"))
    assert worker.jobs_proc is not None
    begun = time.monotonic()
    worker.jobs_proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.jobs_proc.wait, 15)
    assert time.monotonic() - begun < 10 and code == 0
    assert pids_alive(pids) == []
    await worker.start_jobs()
    for job_id in ("g-1", "g-2"):
        job = await worker.get(job_id)
        assert job.state == job_pb2.JOB_STATE_CANCELLED and "stopping" in job.reason
        assert not worker.work_dir(job_id).exists()


def test_example_executor_refuses_to_start_without_a_socket() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SOCKET_PATH", "TENDRIL_BRIDGE_TOKEN")}
    done = subprocess.run(
        [sys.executable, "-m", "tendril_example"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "TENDRIL_BRIDGE_TOKEN" in done.stderr
