"""Per-round metrics: what each worker reported, folded into one metrics.jsonl line per round."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class WorkerRound:
    """What one training job reported about one round."""

    worker_id: str
    loss_sum: float = 0.0  # Σ batch loss × batch size, from BATCH reports
    batch_samples: int = 0
    batches: int = 0
    loss: float | None = None  # the round's mean loss from the METRICS report
    samples: int | None = None
    compute_seconds: float = 0.0
    data_wait_seconds: float = 0.0  # waiting for data slices
    train_seconds: float = 0.0  # round start to sync point, as the worker measured it
    bytes_up: int = 0
    send_seconds: float = 0.0
    bytes_down: int = 0
    receive_seconds: float = 0.0
    contributors: int = 0
    received: bool = False

    def add_batch(self, batch_size: int, batch_seconds: float, loss: float | None) -> None:
        self.batches += 1
        self.batch_samples += batch_size
        self.compute_seconds += max(batch_seconds, 0.0)
        if loss is not None and math.isfinite(loss):
            self.loss_sum += loss * batch_size

    @property
    def mean_loss(self) -> float | None:
        if self.loss is not None:
            return self.loss
        return self.loss_sum / self.batch_samples if self.batch_samples else None

    @property
    def sample_count(self) -> int:
        return self.samples if self.samples is not None else self.batch_samples


def round_line(round_index: int, workers: list[WorkerRound], *, wall_seconds: float) -> dict[str, Any]:
    """The metrics.jsonl record of a finished round (workers: those that took part)."""
    losses = {w.worker_id: w.mean_loss for w in workers if w.mean_loss is not None}
    weights = {w.worker_id: w.sample_count for w in workers}
    total = sum(weights[k] for k in losses)
    loss_mean = sum(losses[k] * weights[k] for k in losses) / total if total else None
    if loss_mean is None and losses:
        loss_mean = sum(losses.values()) / len(losses)
    return {
        "round": round_index,
        "workers": sorted(w.worker_id for w in workers),
        "contributors": max((w.contributors for w in workers), default=0),
        "loss_mean": loss_mean,
        "loss": dict(sorted(losses.items())),
        "samples": sum(weights.values()),
        "samples_per_worker": dict(sorted(weights.items())),
        "batches": {w.worker_id: w.batches for w in sorted(workers, key=lambda w: w.worker_id)},
        "bytes_up": sum(w.bytes_up for w in workers),
        "bytes_down": sum(w.bytes_down for w in workers),
        "compute_seconds": round(sum(w.compute_seconds for w in workers), 4),
        "data_wait_seconds": round(sum(w.data_wait_seconds for w in workers), 4),
        "train_seconds": round(sum(w.train_seconds for w in workers), 4),
        "communication_seconds": round(sum(w.send_seconds + w.receive_seconds for w in workers), 4),
        "wall_seconds": round(wall_seconds, 4),
    }


class MetricsFile:
    """Appends one JSON line per round; each line is flushed whole so readers never see half a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def append(self, line: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a metrics.jsonl file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_stats(lines: list[dict[str, Any]]) -> dict[str, float]:
    """Whole-run figures: data stall fraction (waiting for slices / training time) and compute
    utilization (step time / training + communication time), summed over workers and rounds."""
    compute = sum(line.get("compute_seconds", 0.0) for line in lines)
    wait = sum(line.get("data_wait_seconds", 0.0) for line in lines)
    train = sum(line.get("train_seconds", 0.0) for line in lines)
    comm = sum(line.get("communication_seconds", 0.0) for line in lines)
    if train <= 0:
        raise ValueError("the metrics carry no training time (train_seconds); they predate these figures")
    return {
        "stall_fraction": wait / train,
        "compute_utilization": compute / (train + comm),
        "rounds": float(len(lines)),
    }
