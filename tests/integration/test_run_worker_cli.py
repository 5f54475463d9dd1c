"""`tendril worker run` / `tendril gateway run` as a user starts them: errors are one line, exit 2."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from tendril.cli.config_template import render
from tendril.core.channel import open_channel
from tendril.core.ports import free_port
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_sdk.errors import error_reason
from tests.procs import kill_group, running, spawn, wait_serving, worker_config

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "tendril.cli"]


def test_port_in_use_is_one_line_naming_the_key_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config_path = tmp_path / "worker.toml"
        config_path.write_text(render(worker_config(tmp_path)))
        proc = subprocess.run(
            [*CLI, "worker", "run", "--config", str(config_path), "--set", f"job.listen=127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"127.0.0.1:{port} is in use (config key job.listen / TENDRIL_JOB_LISTEN)" in lines[0]
    assert not list((tmp_path / "state" / "logs").glob("*.log"))  # no service was started


def test_env_layer_reaches_worker_run(tmp_path: Path) -> None:
    config_path = tmp_path / "worker.toml"
    config_path.write_text(render(worker_config(tmp_path)))
    proc = subprocess.run(
        [*CLI, "worker", "run", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TENDRIL_ARBITER_STRATEGY": "greedy"},
    )
    assert proc.returncode == 2
    assert "arbiter.strategy" in proc.stderr and "Traceback" not in proc.stderr


async def test_standalone_gateway_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = spawn([*CLI, "gateway", "run", "--listen", address], log=tmp_path / "gateway.log")
    with running(proc):
        await wait_serving(address, "tendril.gateway.v1.RegistryService", timeout=60)
        busy = await asyncio.to_thread(
            subprocess.run, [*CLI, "gateway", "run", "--listen", address], capture_output=True, text=True, timeout=60
        )
        assert busy.returncode == 2
        assert f"{address} is in use" in busy.stderr and busy.stderr.count("\n") == 1
        started = time.monotonic()
        kill_group(proc, signal.SIGTERM)
        assert proc.returncode == 0, (tmp_path / "gateway.log").read_text()
        assert time.monotonic() - started < 10


async def test_standalone_gateway_takes_its_limits_as_flags(tmp_path: Path) -> None:
    bad = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "gateway", "run", "--listen", f"127.0.0.1:{free_port()}", "--put-rate", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--put-rate" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    address = f"127.0.0.1:{free_port()}"
    argv = [*CLI, "gateway", "run", "--listen", address, "--max-record-bytes", "2048", "--put-burst", "2"]
    argv += ["--put-rate", "0.01"]  # no token comes back during the test
    proc = spawn(argv, log=tmp_path / "gateway.log")
    with running(proc):
        await wait_serving(address, "tendril.gateway.v1.RegistryService", timeout=60)
        async with open_channel(address, peer_id="flags") as channel:
            reg = gateway_pb2_grpc.RegistryServiceStub(channel)
            big = gateway_pb2.Record(kind="k", id="big", ttl_seconds=10)
            big.payload.value = b"x" * 3000
            with pytest.raises(grpc.aio.AioRpcError) as too_large:
                await reg.Put(gateway_pb2.PutRequest(record=big), timeout=10)
            assert error_reason(too_large.value) == "RECORD_TOO_LARGE" and "2048" in too_large.value.details()
            small = gateway_pb2.Record(kind="k", id="small", ttl_seconds=10)
            secret = (await reg.Put(gateway_pb2.PutRequest(record=small), timeout=10)).secret
            with pytest.raises(grpc.aio.AioRpcError) as limited:  # the refused Put above took a token too
                await reg.Put(gateway_pb2.PutRequest(record=small, secret=secret), timeout=10)
            assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _start_in(cwd: Path, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``cwd`` with exactly ``env`` (no PYTHONSAFEPATH added), output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def test_a_tendril_folder_in_the_working_directory_shadows_nothing(tmp_path: Path) -> None:
    """Started (as a person would) from a folder holding `tendril/` and `tendril_proto/` packages,
    the worker's services still import the installed packages: reflection serves every proto
    with its comments, so `grpcurl describe` works."""
    here = tmp_path / "project"
    for name in ("tendril", "tendril_proto"):
        (here / name).mkdir(parents=True)
        (here / name / "__init__.py").write_text("raise ImportError('the working directory was imported')\n")
    config = worker_config(tmp_path)
    config_path = tmp_path / "worker.toml"
    config_path.write_text(render(config))
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    log = tmp_path / "worker.out"
    proc = _start_in(here, [str(bin_dir / "tendril"), "worker", "run", "--config", str(config_path)], env, log)
    with running(proc):
        await wait_serving(config.listen("job"), "tendril.job.v1.JobService", timeout=90)
        described = await asyncio.to_thread(
            subprocess.run,
            [str(bin_dir / "grpcurl"), "-plaintext", config.listen("job"), "describe", "tendril.job.v1.JobService"],
            cwd=here,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert described.returncode == 0, described.stderr + log.read_text()
        assert "rpc Dispatch" in described.stdout and "//" in described.stdout  # with the proto comments
