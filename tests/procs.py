"""Helpers for tests that start real service processes: free ports, configs, process groups."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core.config import WorkerConfig, load_config
from tendril.core.ports import free_ports
from tendril.core.process import child_env

# Where the workers of a test run offer handoff/ (tests/conftest.py); unset: nowhere.
HANDOFF_ENV = "TENDRIL_TEST_HANDOFF_DIR"


def worker_config(tmp: Path, **overrides: Any) -> WorkerConfig:
    """A WorkerConfig on free ports with state and work dirs under ``tmp``.

    ``overrides`` use dotted keys with "__" for the dot: ``lease__renewable_seconds=2``.
    """
    ports = free_ports(len(WorkerConfig.SERVICE_SECTIONS) + 3)
    values: dict[str, Any] = {
        "worker.id": "worker-test",
        "worker.state_dir": str(tmp / "state"),
        "worker.work_dir": str(tmp / "work"),
        "gateway.embedded_listen": f"127.0.0.1:{ports.pop()}",
        "telemetry.metrics_listen": f"127.0.0.1:{ports.pop()}",
        "telemetry.log_format": "json",
        "resources.cpu": 4,
        "resources.memory_gib": 8,
        "resources.storage_gib": 50,
        "resources.gpu": 0,
        "job.handoff_dir": os.environ.get(HANDOFF_ENV, ""),
    }
    for section in WorkerConfig.SERVICE_SECTIONS:
        values[f"{section}.listen"] = f"127.0.0.1:{ports.pop()}"
    values["paramserver.data_listen"] = f"127.0.0.1:{ports.pop()}"
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(None, env={}, overrides=values)


def write_config_json(config: WorkerConfig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_dict()))
    return path


def spawn(args: list[str], *, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process in its own process group, output to ``log``."""
    full_env = child_env(env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)


def spawn_service(module: str, config: WorkerConfig, tmp: Path, *, name: str | None = None) -> subprocess.Popen[bytes]:
    """``python -m tendril.<module> --config-json`` for ``config``."""
    name = name or module
    cfg = write_config_json(config, tmp / f"{name}.json")
    return spawn([sys.executable, "-m", f"tendril.{module}", "--config-json", str(cfg)], log=tmp / f"{name}.log")


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a process's whole group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextlib.contextmanager
def running(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    """Kill every given process group when the block ends, however it ends."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc, signal.SIGTERM)
            kill_group(proc)


async def wait_serving(
    address: str, service: str = "", timeout: float = 30.0, *, credentials: grpc.ChannelCredentials | None = None
) -> None:
    """Poll grpc.health.v1 until ``service`` at ``address`` is SERVING (over TLS with ``credentials``)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    channel_cm = (
        grpc.aio.secure_channel(address, credentials) if credentials is not None else grpc.aio.insecure_channel(address)
    )
    async with channel_cm as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError as exc:
                last = exc
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{address} ({service or 'overall'}) not SERVING after {timeout}s: {last}")


def pids_alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still exist (zombies count as gone)."""
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] != "Z":
                    alive.append(pid)
        except FileNotFoundError:
            pass
    return alive
