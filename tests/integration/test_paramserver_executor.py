"""The "aggregate" executor (``python -m tendril_aggregate``) through its job bridge against a real
ParameterServer: done after the last round, 143 on SIGTERM, reopens a run the server lost, 2 for
a bad job config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.server import JobBridge
from tendril.core import tensorstream
from tendril.core.channel import open_channel
from tendril.core.tensorstream import TensorStreamError
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_sdk.bridge import TOKEN_ENV
from tendril_sdk.job import ExecutorRef, JobDescriptor
from tests.procs import kill_group, running, spawn, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration


TOKEN = "aggregate-token"


def _job(tmp_path: Path, **config: object) -> JobDescriptor:
    """An aggregate job's work dir and job.json, as JobService makes them."""
    work = tmp_path / "job-agg-1"
    work.mkdir(mode=0o700)
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir()
    job = JobDescriptor(
        job_id="agg-1",
        worker_id="worker-test",
        executor=ExecutorRef("aggregate", "diloco"),
        config=config,
        work_dir=work,
        socket_path=work / "bridge.sock",
    )
    (work / "job.json").write_text(json.dumps(job.to_dict()))
    return job


@contextlib.asynccontextmanager
async def _bridge(job: JobDescriptor, paramserver: str) -> AsyncIterator[JobBridge]:
    """The job's bridge, in this process, on the worker's parameter server."""
    bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=paramserver)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


def _executor(tmp_path: Path, job: JobDescriptor) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tendril_aggregate", "--socket", str(job.socket_path)]
    env = {"JOB_JSON": str(job.work_dir / "job.json"), TOKEN_ENV: TOKEN, "WORK_DIR": str(job.work_dir)}
    return spawn(args, log=tmp_path / "executor.log", env=env)


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "executor did not exit"
        await asyncio.sleep(0.05)
    return proc.returncode


async def _opened(stub: paramserver_pb2_grpc.ParameterServerServiceStub, run: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            view = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id=run))
            if view.state == paramserver_pb2.ROUND_STATE_OPEN:
                return
            raise AssertionError(f"run {run} is not open")
        except Exception:
            assert time.monotonic() < deadline, "the executor never opened the run"
            await asyncio.sleep(0.1)


async def test_executor_sees_every_round_through(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    address = config.listen("paramserver")
    ps = spawn_service("paramserver", config, tmp_path)
    with running(ps):
        await wait_serving(address)
        # outer_momentum 0 (plain SGD outer steps) travels job config → OpenRun → OpenJob as 0, not "default".
        job = _job(
            tmp_path,
            run_id="run-x",
            expected_workers=1,
            quorum=1,
            round_timeout_seconds=5,
            rounds=2,
            outer_momentum=0,
        )
        async with _bridge(job, address):
            executor = _executor(tmp_path, job)
            with running(executor):
                theta = tmp_path / "theta.st"
                save_file({"w": np.ones((64, 64), dtype=np.float32)}, str(theta))
                delta = tmp_path / "delta.st"
                save_file({"w": np.full((64, 64), 0.01, dtype=np.float32)}, str(delta))
                async with open_channel(address, peer_id="worker-a") as channel:
                    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
                    await _opened(stub, "run-x")
                    assert await tensorstream.push_parameters(channel, theta, run_id="run-x", worker_id="a") == (
                        True,
                        0,
                    )
                    for r in range(2):
                        await tensorstream.push_update(
                            channel, delta, run_id="run-x", round=r, worker_id="a", weight=4, codec="int8"
                        )
                        await tensorstream.pull_update(
                            channel, run_id="run-x", round=r, dest=tmp_path / f"u{r}", codec="fp32"
                        )
                    # No momentum: the same Δ gives the same step (with 0.9 the second would be 1.4× the first).
                    u0, u1 = (load_file(str(tmp_path / f"u{r}"))["w"] for r in range(2))
                    np.testing.assert_allclose(u1, u0, rtol=1e-5)
                    assert await _wait_exit(executor) == 0
                    # Closed, not purged: the final θ is still served, pushes are refused.
                    assert await tensorstream.pull_parameters(channel, run_id="run-x", dest=tmp_path / "final") == 2
                    with pytest.raises(TensorStreamError):
                        await tensorstream.push_update(
                            channel, delta, run_id="run-x", round=1, worker_id="b", weight=1, codec="fp32"
                        )
    log = (tmp_path / "executor.log").read_text()
    assert "aggregate.closed" in log
    # It followed the rounds as they changed (WatchRun), not by polling.
    rounds = [json.loads(line) for line in log.splitlines() if '"aggregate.round"' in line]
    assert rounds[-1]["run_state"] == "finished" and {r["round"] for r in rounds} == {0, 1}


async def test_executor_closes_the_run_on_sigterm(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    address = config.listen("paramserver")
    ps = spawn_service("paramserver", config, tmp_path)
    with running(ps):
        await wait_serving(address)
        job = _job(tmp_path, run_id="forever", expected_workers=2, quorum=1, round_timeout_seconds=1, rounds=0)
        async with _bridge(job, address):
            executor = _executor(tmp_path, job)
            with running(executor):
                async with open_channel(address, peer_id="tester") as channel:
                    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
                    await _opened(stub, "forever")
                    executor.send_signal(signal.SIGTERM)
                    assert await _wait_exit(executor) == 143
                    theta = tmp_path / "theta.st"
                    save_file({"w": np.ones(8, dtype=np.float32)}, str(theta))
                    with pytest.raises(TensorStreamError) as closed:
                        await tensorstream.push_parameters(channel, theta, run_id="forever", worker_id="a")
                    assert closed.value.reason == "RUN_CLOSED"


async def test_executor_reopens_a_run_the_parameter_server_lost(tmp_path: Path) -> None:
    """The parameter server restarts without the run's state: the watch breaks, then answers
    RUN_NOT_OPEN, and the executor opens the run again."""
    config = worker_config(tmp_path)
    address = config.listen("paramserver")
    ps = spawn_service("paramserver", config, tmp_path)
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        await wait_serving(address)
        job = _job(tmp_path, run_id="lost", expected_workers=2, quorum=1, round_timeout_seconds=1, rounds=0)
        async with _bridge(job, address):
            executor = _executor(tmp_path, job)
            with running(executor):
                async with open_channel(address, peer_id="tester") as channel:
                    await _opened(paramserver_pb2_grpc.ParameterServerServiceStub(channel), "lost")
                kill_group(ps)
                shutil.rmtree(config.state_dir / "paramserver")
                restarted.append(spawn_service("paramserver", config, tmp_path, name="paramserver2"))
                await wait_serving(address)
                async with open_channel(address, peer_id="tester") as channel:
                    await _opened(paramserver_pb2_grpc.ParameterServerServiceStub(channel), "lost")
                assert executor.poll() is None, "the executor lives on"
                executor.send_signal(signal.SIGTERM)
                assert await _wait_exit(executor) == 143
    finally:
        for proc in [ps, *restarted]:
            kill_group(proc)
    log = (tmp_path / "executor.log").read_text()
    # NOTE: the run was open again at the restarted server (checked above). Usually the watch
    # broke and the executor reopened it; on a busy machine the first OpenRun's answer can be lost
    # and its retry (SDK, UNAVAILABLE) is what lands on the restarted server: one "opened" then.
    reopened = '"aggregate.reopen"' in log and log.count('"aggregate.opened"') == 2
    assert reopened or log.count('"aggregate.opened"') == 1, log


async def test_executor_rejects_a_bad_job(tmp_path: Path) -> None:
    job = _job(tmp_path, expected_workers=2)
    async with _bridge(job, "127.0.0.1:1"):
        executor = _executor(tmp_path, job)
        with running(executor):
            assert await _wait_exit(executor) == 2
    assert "needs run_id" in (tmp_path / "executor.log").read_text()
