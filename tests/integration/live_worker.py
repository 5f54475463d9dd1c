"""A real worker (`tendril worker run`) for tests of operator tools: status, jobs, grpcurl.

It runs from a TOML file on free ports with its state under the test's tmp dir, and
everything it started is killed when the block ends, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from google.protobuf import struct_pb2

from tendril.cli.config_template import render
from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tests.procs import pids_alive, running, spawn, wait_serving, worker_config

CLI = [sys.executable, "-m", "tendril.cli"]
SCHEDULER = "sched-ops"
# The shipped example executor: prints a few lines, then sleeps as long as its config says.
EXAMPLE = ("example", "echo")
HEALTH_NAMES = {
    "lease": "tendril.lease.v1.LeaseService",
    "job": "tendril.job.v1.JobService",
    "arbiter": "tendril.arbiter.v1.ArbiterService",
    "data_fetcher": "tendril.data.v1.DataFetcherService",
    "paramserver": "tendril.paramserver.v1.ParameterServerService",
}


@dataclasses.dataclass
class LiveWorker:
    proc: subprocess.Popen[bytes]
    config: WorkerConfig
    toml: Path
    log: Path

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.config.state_dir / "run" / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data

    def child(self, name: str) -> dict[str, Any]:
        child: dict[str, Any] = self.status().get("children", {}).get(name, {})
        return child

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def descendants(self) -> list[int]:
        pids = [self.proc.pid]
        with contextlib.suppress(psutil.Error):
            pids += [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        return pids


@contextlib.contextmanager
def live_worker(tmp_path: Path, **overrides: Any) -> Iterator[LiveWorker]:
    """``tendril worker run --config worker.toml`` on free ports (``overrides`` as in worker_config)."""
    config = worker_config(tmp_path, **overrides)
    toml = tmp_path / "worker.toml"
    toml.write_text(render(config))
    log = tmp_path / "supervisor.out"
    proc = spawn([*CLI, "worker", "run", "--config", str(toml)], log=log)
    worker = LiveWorker(proc, config, toml, log)
    seen: set[int] = set()
    try:
        with running(proc):
            try:
                yield worker
            finally:
                seen.update(worker.descendants())
    finally:
        # Safety net: executors or services that outlived their supervisor are killed too.
        for pid in pids_alive(sorted(seen)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.05)


async def wait_all_serving(worker: LiveWorker, timeout: float = 90.0) -> None:
    try:
        await until(lambda: worker.status().get("state") == "serving", timeout, "status.json says serving")
    except AssertionError:
        raise AssertionError(f"worker did not start:\n{worker.output()}") from None
    config = worker.config
    await asyncio.gather(*(wait_serving(config.listen(s), name, 30) for s, name in HEALTH_NAMES.items()))


async def renewable_lease(config: WorkerConfig, owner: str = SCHEDULER, cpu: float = 1) -> lease_pb2.Lease:
    """Reserve (as the worker itself, like its Arbiter) and confirm a lease owned by ``owner``."""
    async with open_channel(config.listen("lease"), peer_id=config.worker_id) as channel:
        stub = lease_pb2_grpc.LeaseServiceStub(channel)
        reserved = await stub.Reserve(
            lease_pb2.ReserveRequest(
                owner_id=owner,
                resources=common_pb2.Resources(cpu=cpu, memory_gib=1, storage_gib=1),
                price=100,
                request_id=f"req-{time.monotonic_ns()}",
                ttl_seconds=5,
            ),
            timeout=10,
        )
        confirmed = await stub.Confirm(lease_pb2.ConfirmRequest(lease_id=reserved.lease.lease_id), timeout=10)
    return confirmed.lease


async def dispatch(
    config: WorkerConfig,
    lease_id: str,
    job_id: str,
    *,
    owner: str = SCHEDULER,
    executor: tuple[str, str] = EXAMPLE,
    job_config: dict[str, Any] | None = None,
) -> job_pb2.Job:
    """Dispatch as ``owner`` and wait until the job runs."""
    body = struct_pb2.Struct()
    body.update(job_config if job_config is not None else {"sleep_seconds": 600})
    async with open_channel(config.listen("job"), peer_id=owner) as channel:
        stub = job_pb2_grpc.JobServiceStub(channel)
        await stub.Dispatch(
            job_pb2.DispatchRequest(
                job_id=job_id,
                lease_id=lease_id,
                executor=common_pb2.ExecutorRef(executor_class=executor[0], name=executor[1]),
                config=body,
            ),
            timeout=30,
        )
        deadline = time.monotonic() + 30
        while True:
            job = (await stub.Get(job_pb2.GetRequest(job_id=job_id), timeout=10)).job
            if job.state == job_pb2.JOB_STATE_RUNNING:
                return job
            assert job.state == job_pb2.JOB_STATE_PENDING, f"job {job_id} ended: {job}"
            assert time.monotonic() < deadline, f"job {job_id} not running after 30 s"
            await asyncio.sleep(0.05)


def job_log_has(config: WorkerConfig, job_id: str, text: str) -> bool:
    path = config.work_dir / f"job-{job_id}" / "executor.log"
    return path.exists() and text in path.read_text(errors="replace")


async def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``tendril ARGS`` in a subprocess (the CLI runs its own event loop)."""
    return await asyncio.to_thread(
        subprocess.run, [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
