"""The "aggregate" executor against a real ParameterServer: done after the last round, 143 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tendril.core import tensorstream
from tendril.core.channel import open_channel
from tendril.core.tensorstream import TensorStreamError
from tendril.paramserver.executor import ADDRESS_ENV
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tests.procs import running, spawn, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration


def _job(tmp_path: Path, **config: object) -> Path:
    path = tmp_path / "job.json"
    path.write_text(
        json.dumps(
            {
                "job_id": "agg-1",
                "worker_id": "worker-test",
                "executor": {"class": "aggregate", "name": "diloco"},
                "config": config,
                "work_dir": str(tmp_path),
                "socket_path": str(tmp_path / "bridge.sock"),
            }
        )
    )
    return path


def _executor(tmp_path: Path, job: Path, address: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tendril.paramserver.executor", "--socket", str(tmp_path / "bridge.sock")]
    return spawn(args, log=tmp_path / "executor.log", env={"JOB_JSON": str(job), ADDRESS_ENV: address})


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
            await stub.GetRound(paramserver_pb2.GetRoundRequest(job_id=run))
            return
        except Exception:
            assert time.monotonic() < deadline, "the executor never opened the run"
            await asyncio.sleep(0.1)


async def test_executor_sees_every_round_through(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    address = config.listen("paramserver")
    ps = spawn_service("paramserver", config, tmp_path)
    with running(ps):
        await wait_serving(address)
        job = _job(tmp_path, run_id="run-x", expected_workers=1, quorum=1, round_timeout_seconds=5, rounds=2)
        executor = _executor(tmp_path, job, address)
        with running(executor):
            theta = tmp_path / "theta.st"
            save_file({"w": np.ones((64, 64), dtype=np.float32)}, str(theta))
            delta = tmp_path / "delta.st"
            save_file({"w": np.full((64, 64), 0.01, dtype=np.float32)}, str(delta))
            async with open_channel(address, peer_id="worker-a") as channel:
                stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
                await _opened(stub, "run-x")
                assert await tensorstream.push_parameters(channel, theta, run_id="run-x", worker_id="a") == (True, 0)
                for r in range(2):
                    await tensorstream.push_update(
                        channel, delta, run_id="run-x", round=r, worker_id="a", weight=4, codec="int8"
                    )
                    await tensorstream.pull_update(channel, run_id="run-x", round=r, dest=tmp_path / "u", codec="fp32")
                assert await _wait_exit(executor) == 0
                # Closed, not purged: the final θ is still served, pushes are refused.
                assert await tensorstream.pull_parameters(channel, run_id="run-x", dest=tmp_path / "final") == 2
                with pytest.raises(TensorStreamError):
                    await tensorstream.push_update(
                        channel, delta, run_id="run-x", round=1, worker_id="b", weight=1, codec="fp32"
                    )
    log = (tmp_path / "executor.log").read_text()
    assert "aggregate.closed" in log


async def test_executor_closes_the_run_on_sigterm(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    address = config.listen("paramserver")
    ps = spawn_service("paramserver", config, tmp_path)
    with running(ps):
        await wait_serving(address)
        job = _job(tmp_path, run_id="forever", expected_workers=2, quorum=1, round_timeout_seconds=1, rounds=0)
        executor = _executor(tmp_path, job, address)
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


async def test_executor_rejects_a_bad_job(tmp_path: Path) -> None:
    job = _job(tmp_path, expected_workers=2)
    executor = _executor(tmp_path, job, "127.0.0.1:1")
    with running(executor):
        assert await _wait_exit(executor) == 2
    assert "needs run_id" in (tmp_path / "executor.log").read_text()
