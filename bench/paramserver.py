"""ParameterServer peak RSS with 8 concurrent pushers of a 256 MiB model, and its disk writes per round.

The PS runs as ``python -m tendril.paramserver`` with GLIBC_TUNABLES; this process
opens a run (8 expected workers), pushes θ0, then 8 concurrent ``push_update`` calls of a
256 MiB fp32 pseudo-gradient, pulls the round's update, then the parameters (served once the
round's θ reached the disk), and meanwhile samples the PS's resident memory from
``/proc/<pid>/status`` (VmRSS every 10 ms, and VmHWM, the kernel's own peak). Targets: peak ≤
2.5 × model + 300 MiB; bytes written per round ≤ 2 × model (θ and the momentum buffer), read
from ``/proc/<pid>/io`` (``write_bytes``: what the process sent to the storage layer) before
the first push and after the parameters were pulled.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import MIB, Figure, spawn_on_free_ports, spawn_python, stop

PUSHERS = 8
METADATA_BYTES = 1024 * 1024  # state.json and the commit records, beside the checkpoint


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class RssSampler:
    """Polls a process's VmRSS on a thread; remembers the peak."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, _status_kib(self.pid, "VmRSS"))
                self.samples += 1
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise KeyError("write_bytes")


def _model(path: Path, size: int, seed: int, scale: float) -> None:
    """A 4-tensor fp32 model of ``size`` bytes (no tensor over 2^31 bytes needed)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    elements = size // 4
    shapes = {"wte": elements // 2, "h.0.attn": elements // 4, "h.0.mlp": elements // 4 - 1024, "ln_f": 1024}
    save_file({n: (rng.standard_normal(c, dtype=np.float32) * scale) for n, c in shapes.items()}, str(path))


async def _drive(address: str, theta: Path, delta: Path, workdir: Path, pid: int) -> dict[str, Any]:
    from tendril.core import tensorstream
    from tendril.core.channel import open_channel
    from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc

    async with open_channel(address, peer_id="bench") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="bench", expected_workers=PUSHERS, rounds=1))
        await tensorstream.push_parameters(channel, theta, run_id="bench", worker_id="bench")
        written_before = _write_bytes(pid)
        start = time.perf_counter()
        sent = await asyncio.gather(
            *(
                tensorstream.push_update(
                    channel, delta, run_id="bench", round=0, worker_id=f"w{i}", weight=1.0 + i, codec="fp32"
                )
                for i in range(PUSHERS)
            )
        )
        pushed = time.perf_counter() - start
        _, contributors = await tensorstream.pull_update(
            channel, run_id="bench", round=0, dest=workdir / "update.safetensors", codec="fp32", timeout=600
        )
        closed = time.perf_counter() - start
        await tensorstream.pull_parameters(channel, run_id="bench", dest=workdir / "theta.safetensors")
        written = _write_bytes(pid) - written_before
    assert contributors == PUSHERS
    return {
        "push_seconds": round(pushed, 2),
        "push_and_close_seconds": round(closed, 2),
        "pull_seconds": round(closed - pushed, 2),
        "bytes_pushed": sum(sent),
        "bytes_written_per_round": written,
    }


def measure(workdir: Path, model_bytes: int = 256 * MIB) -> list[Figure]:
    theta, delta = workdir / "ps-theta.safetensors", workdir / "ps-delta.safetensors"
    _model(theta, model_bytes, 0, 1.0)
    _model(delta, model_bytes, 1, 1e-3)
    theta_bytes = theta.stat().st_size
    state = workdir / "ps-state"
    config = workdir / "ps-config.json"

    def start(ports: list[int]) -> subprocess.Popen[bytes]:
        listen, data = ports
        config.write_text(
            json.dumps(
                {
                    "worker": {"id": "bench", "state_dir": str(state)},
                    "paramserver": {"listen": f"127.0.0.1:{listen}", "data_listen": f"127.0.0.1:{data}"},
                    "telemetry": {"log_level": "warning", "log_format": "json"},
                }
            )
        )
        return spawn_python(
            ["-m", "tendril.paramserver", "--config-json", str(config)], log=workdir / "paramserver.log"
        )

    proc, (port, _) = spawn_on_free_ports(2, start, workdir / "paramserver.log")
    try:
        idle_kib = _status_kib(proc.pid, "VmRSS")
        with RssSampler(proc.pid) as sampler:
            run = asyncio.run(_drive(f"127.0.0.1:{port}", theta, delta, workdir, proc.pid))
        hwm_kib = _status_kib(proc.pid, "VmHWM")
    finally:
        stop(proc)
        for path in (theta, delta, workdir / "update.safetensors", workdir / "theta.safetensors"):
            path.unlink(missing_ok=True)
    peak_mib = max(sampler.peak_kib, hwm_kib) / 1024
    model_mib = model_bytes / MIB
    limit = 2.5 * model_mib + 300
    rss = Figure(
        f"ParameterServer peak RSS, {PUSHERS} pushers × {model_mib:.0f} MiB",
        round(peak_mib, 1),
        "MiB",
        baseline=round(PUSHERS * model_mib, 1),
        baseline_name=f"{PUSHERS} × model (holding every push)",
        target=f"≤ 2.5 × model + 300 MiB = {limit:.0f} MiB",
        ok=peak_mib <= limit,
        note=f"idle {idle_kib / 1024:.0f} MiB; {run['push_seconds']} s to push, "
        f"{run['push_and_close_seconds']} s until the update was pulled",
        details={
            **run,
            "idle_rss_mib": round(idle_kib / 1024, 1),
            "vmhwm_mib": round(hwm_kib / 1024, 1),
            "sampled_peak_mib": round(sampler.peak_kib / 1024, 1),
            "samples": sampler.samples,
            "aggregate_push_gbps": round(run["bytes_pushed"] / run["push_seconds"] / 1e9, 3),
        },
    )
    written = run["bytes_written_per_round"]
    # θ and momentum are SafeTensors files (a header each), beside state.json and a record per
    # commit (a page each): METADATA_BYTES covers those.
    checkpoint = 2 * theta_bytes
    disk = Figure(
        "ParameterServer disk bytes written per round",
        round(written / MIB, 1),
        "MiB",
        baseline=round(checkpoint / MIB, 1),
        baseline_name="2 × model (θ and momentum checkpoint)",
        target=f"≤ 2 × model + {METADATA_BYTES // 1024} KiB of state = {(checkpoint + METADATA_BYTES) / MIB:.1f} MiB",
        ok=written <= checkpoint + METADATA_BYTES,
        note=f"{written / model_bytes:.3f} × model, /proc/<pid>/io write_bytes over one round of {PUSHERS} pushes",
        details={"bytes_written": written, "model_bytes": model_bytes, "theta_file_bytes": theta_bytes},
    )
    return [rss, disk]
