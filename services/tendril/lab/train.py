"""A DiLoCo run end to end in a lab: the demo's tiny model and data, every peer on its own host.

The data set and job.toml are the demo's (:mod:`tendril.scheduler.demo`); what differs is
where each process runs and which address it binds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from tendril.lab.lab import Lab
from tendril.scheduler.demo import DemoSettings, job_toml, model_table, prepare_data
from tendril.scheduler.metrics import read_metrics, run_stats
from tendril.scheduler.state import STATE_FILES


@dataclasses.dataclass
class LabRun:
    """What a run in the lab left."""

    lines: list[dict[str, Any]]
    scheduler_exit: int | None  # None: it did not end within the timeout
    seconds: float
    scheduler_log: str


async def train(lab: Lab, settings: DemoSettings, *, model_config: Mapping[str, Any] | None = None) -> LabRun:
    """Prepare the demo's data set (in ``settings.out``), start gateway, data node and the lab's
    workers on their hosts, run the scheduler to its end (or ``settings.timeout_seconds``).

    ``model_config``: job.toml's ``[training.model.config]`` instead of the demo model's (e.g. a
    wider GPT-2 for the bench); vocab_size and the position limit still come from the data set.
    """
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
        job_text(
            settings,
            listen=lab.scheduler_address,
            gateway=lab.gateway_address,
            data_node=lab.data_node_address,
            model_config=model_config,
        )
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


def job_text(
    settings: DemoSettings, *, listen: str, gateway: str, data_node: str, model_config: Mapping[str, Any] | None = None
) -> str:
    """The demo's job.toml, with ``model_config`` as its ``[training.model.config]`` when given."""
    text = job_toml(settings, listen=listen, gateway=gateway, data_node=data_node)
    if model_config is None:
        return text
    table = ["[training.model]", 'task = "causal-lm"', "", "[training.model.config]"]
    table += [f"{key} = {json.dumps(value)}" for key, value in model_config.items()]
    # NOTE: job.toml ends with the model's tables (demo.job_toml), so they are swapped whole.
    return text.replace(model_table(settings), "\n".join(table) + "\n")


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
    if len(lines) > 1:
        # NOTE: the last round syncs blocking in every mode, so that the run ends at the server's θ
        before_last = run_stats(lines[:-1])["compute_utilization"]
        out.append(f"compute utilization of the rounds before the last (it syncs blocking) {100 * before_last:.1f} %")
    return out
