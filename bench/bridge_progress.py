"""Job bridge ``ReportProgress`` round trip, p50/p99, beside bare gRPC calls in the same run.

Three processes, each started with the data-plane environment (GLIBC_TUNABLES), as on a worker:

* the scheduler (``bench.progress_scheduler``): CoordinationService on 127.0.0.1 answering
  CONTINUE, built with ``ServiceServer``; also a plain grpc.aio CoordinationService and a
  DataFetcher that accepts the bridge's OpenJob/CloseJob;
* JobService's role (``bench.progress_bridge``): a real :class:`JobBridge` on a Unix socket
  with a token, forwarding to that scheduler, plus the two baseline servers;
* the executor (``bench.progress_client``): the DiLoCo executor's bridge client reporting one
  BATCH per call, timed around the call.

Measured, interleaved in blocks (see ``progress_client``):

* ``bridge``: executor → bridge (UDS) → scheduler (TCP) and back — the figure;
* ``bare`` (baseline): a trivial unary call on a plain grpc.aio server over a Unix socket;
* ``two_hop`` (reference): plain grpc.aio servers along the bridge's route (UDS, then TCP),
  the floor for any bridge that asks the scheduler.
"""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import spawn_on_free_ports, spawn_python, stop
from bench.progress_bridge import BARE_SOCKET, BRIDGE_SOCKET, FORWARD_SOCKET
from tendril.bridge.auth import TOKEN_ENV
from tendril.bridge.server import MAX_SOCKET_PATH_BYTES

CALLS = 2000
WARMUP = 200
CLIENT_TIMEOUT_SECONDS = 240.0
START_TIMEOUT_SECONDS = 60.0


def _wait_for_unix_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening on {path}")
        with socket.socket(socket.AF_UNIX) as s:
            if s.connect_ex(str(path)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {path} after {timeout} s")


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no output)"


def _percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99), interpolated between the two nearest calls."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_percentile(times, 50), 4),
        "p99_ms": round(_percentile(times, 99), 4),
        "mean_ms": round(statistics.fmean(times), 4),
        "min_ms": round(min(times), 4),
    }


def _run_client(base: Path, env: dict[str, str], calls: int, warmup: int, watched: dict[str, int]) -> dict[str, Any]:
    result, log = base / "client.json", base / "client.log"
    targets = {"bridge": BRIDGE_SOCKET, "bare": BARE_SOCKET, "two_hop": FORWARD_SOCKET}
    args = [str(result), "--calls", str(calls), "--warmup", str(warmup)]
    args += [f"--target={name}={base / rel}" for name, rel in targets.items()]
    args += [f"--watch={name}={pid}" for name, pid in watched.items()]
    client = spawn_python(["-m", "bench.progress_client", *args], log=log, env=env)
    try:
        code = client.wait(timeout=CLIENT_TIMEOUT_SECONDS)
    finally:
        stop(client)
    if code != 0 or not result.exists():
        raise RuntimeError(f"the client exited with {code}:\n{_tail(log)}")
    got: dict[str, Any] = json.loads(result.read_text())
    return got


def measure(workdir: Path, calls: int = CALLS, warmup: int = WARMUP) -> dict[str, Any]:
    base = workdir / "bridge-progress"
    base.mkdir(parents=True, exist_ok=True)
    if len(str(base / BRIDGE_SOCKET).encode()) > MAX_SOCKET_PATH_BYTES:
        raise RuntimeError(f"{base} is too deep for a Unix socket path; run the bench from a shorter TMPDIR")
    env = {TOKEN_ENV: secrets.token_hex(16)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        scheduler, (scheduler_port, bare_port, data_port) = spawn_on_free_ports(
            3,
            lambda ports: spawn_python(
                ["-m", "bench.progress_scheduler", *map(str, ports)], log=base / "scheduler.log"
            ),
            base / "scheduler.log",
        )
        procs.append(scheduler)
        bridge = spawn_python(
            [
                "-m",
                "bench.progress_bridge",
                str(base),
                f"127.0.0.1:{scheduler_port}",
                f"127.0.0.1:{bare_port}",
                f"127.0.0.1:{data_port}",
            ],
            log=base / "bridge.log",
            env=env,
        )
        procs.append(bridge)
        for rel in (BRIDGE_SOCKET, BARE_SOCKET, FORWARD_SOCKET):
            _wait_for_unix_socket(base / rel, bridge)
        got = _run_client(base, env, calls, warmup, {"bridge_process": bridge.pid, "scheduler_process": scheduler.pid})
    finally:
        for proc in reversed(procs):
            stop(proc)
    times: dict[str, list[float]] = got["times_ms"]
    summary = {name: _summary(values) for name, values in times.items()}
    return {
        "p50_ms": summary["bridge"]["p50_ms"],
        "p99_ms": summary["bridge"]["p99_ms"],
        "calls": len(times["bridge"]),
        "warmup_calls": warmup,
        "baseline_p50_ms": summary["bare"]["p50_ms"],
        "baseline_p99_ms": summary["bare"]["p99_ms"],
        "two_hop_baseline_p50_ms": summary["two_hop"]["p50_ms"],
        "two_hop_baseline_p99_ms": summary["two_hop"]["p99_ms"],
        "summary_ms": summary,
        # CPU µs per timed call of each process, per route: where the time goes. Less
        # load-dependent than wall-clock latencies, not independent of load: gRPC's threads
        # spend some CPU while they wait, so slower calls on a busy machine count a bit more.
        "cpu_us_per_call": got["cpu_us_per_call"],
        "route": "executor process -> bridge process (UDS, token) -> scheduler process (TCP 127.0.0.1)",
    }
