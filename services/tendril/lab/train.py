"""A DiLoCo run end to end in a lab: the demo's tiny model and data, every peer on its own host.

The data set and job.toml are the demo's (:mod:`tendril.scheduler.demo`); what differs is
where each process runs and which address it binds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import time
from typing import Any

from tendril.lab.lab import Lab
from tendril.scheduler.demo import DemoSettings, job_toml, prepare_data
from tendril.scheduler.metrics import read_metrics, run_stats
from tendril.scheduler.state import STATE_FILES


@dataclasses.dataclass
class LabRun:
    """What a run in the lab left."""

    lines: list[dict[str, Any]]
    scheduler_exit: int | None  # None: it did not end within the timeout
    seconds: float
    scheduler_log: str


async def train(lab: Lab, settings: DemoSettings) -> LabRun:
    """Prepare the demo's data set (in ``settings.out``), start gateway, data node and the lab's
    workers on their hosts, run the scheduler to its end (or ``settings.timeout_seconds``)."""
    began = time.monotonic()
    data = prepare_data(settings)
    for name in ("metrics.jsonl", "model.safetensors", "loss.png", *STATE_FILES):
        (settings.out / name).unlink(missing_ok=True)
    shutil.rmtree(settings.out / "model", ignore_errors=True)
    await lab.start_gateway()
    await lab.start_data_node(data)
    await lab.start_workers(flexible=settings.flexible_workers)
    job = lab.root / "job.toml"
    job.write_text(
        job_toml(settings, listen=lab.scheduler_address, gateway=lab.gateway_address, data_node=lab.data_node_address)
    )
    scheduler = lab.start_scheduler(job, f"{settings.run_id}-scheduler")
    code: int | None
    try:
        code = await asyncio.to_thread(scheduler.popen.wait, settings.timeout_seconds)
    except subprocess.TimeoutExpired:
        code = None
    metrics = settings.out / "metrics.jsonl"
    lines = read_metrics(metrics) if metrics.exists() else []
    return LabRun(lines, code, time.monotonic() - began, scheduler.tail(30))


def summary(run: LabRun) -> list[str]:
    """Rounds, loss, bytes moved and timing of a run, a few lines."""
    lines = run.lines
    if not lines:
        return ["no round finished"]
    up = sum(int(line.get("bytes_up", 0)) for line in lines)
    down = sum(int(line.get("bytes_down", 0)) for line in lines)
    out = [
        f"{len(lines)} rounds in {run.seconds:.0f} s; mean training loss "
        f"{lines[0]['loss_mean']:.3f} -> {lines[-1]['loss_mean']:.3f}",
    ]
    held_out = [line["eval_loss"] for line in lines if "eval_loss" in line]
    if held_out:
        out.append(f"held-out loss {held_out[0]:.3f} -> {held_out[-1]:.3f}")
    out.append(f"pseudo-gradients pushed {up / 1e6:.2f} MB, updates pulled {down / 1e6:.2f} MB (all workers)")
    try:
        stats = run_stats(lines)
    except ValueError:
        return out
    out.append(
        f"median round {stats['round_seconds']:.2f} s; compute utilization {100 * stats['compute_utilization']:.1f} %"
        f" (sync {100 * stats['sync_share']:.1f} %, waiting for the slowest {100 * stats['waiting_share']:.1f} %);"
        f" load average {stats['load_average']:.2f} (median at round ends)"
    )
    return out
