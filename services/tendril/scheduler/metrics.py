"""Per-round metrics: what each worker reported, folded into one metrics.jsonl line per round.

Times marked "scheduler clock" are taken when the report arrives at the scheduler; they let
the run say how long workers waited for each other at the sync point and what share of each
worker's round went into training steps (see :func:`run_stats`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class WorkerRound:
    """What one training job reported about one round."""

    worker_id: str
    loss_sum: float = 0.0  # Σ batch loss × batch size, from BATCH reports (one may cover several batches)
    batch_samples: int = 0
    batches: int = 0
    loss: float | None = None  # the round's mean loss from the METRICS report
    samples: int | None = None
    compute_seconds: float = 0.0
    data_wait_seconds: float = 0.0  # waiting for data slices
    train_seconds: float = 0.0  # round start until its update was sent, as the worker measured it
    bytes_up: int = 0
    send_seconds: float = 0.0
    bytes_down: int = 0
    receive_seconds: float = 0.0
    contributors: int = 0
    slices_skipped: int = 0  # slices the worker could not read this round (skipped, not trained on)
    received: bool = False
    missed: bool = False  # overlapped sync: it pushed, trained on, and then missed the round's update
    # Scheduler clock: the worker began the round (its UPDATE_RECEIVED of the round before, or
    # its first batch report less that batch's step time), reached the sync point (UPDATE_SENT),
    # and had the round's update (UPDATE_RECEIVED).
    started_at: float | None = None
    arrived_at: float | None = None
    received_at: float | None = None
    # Overlapped sync: the job began the next round (its first batch report) before it had this
    # round's update; its time in this round ends there, not at the update.
    ended_at: float | None = None

    @property
    def end(self) -> float | None:
        """When the job was done with this round: it began the next one, or had the update."""
        return self.ended_at if self.ended_at is not None else self.received_at

    def add_batch(self, batch_size: int, batch_seconds: float, loss: float | None, *, batches: int = 1) -> None:
        """A BATCH report: ``batches`` batches of ``batch_size`` samples and ``batch_seconds`` in
        all, ``loss`` their sample-weighted mean."""
        self.batches += max(1, batches)
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


def round_line(
    round_index: int,
    workers: list[WorkerRound],
    *,
    started: float,
    closed: float,
    planned_seconds: float | None = None,
) -> dict[str, Any]:
    """The metrics.jsonl record of a finished round (workers: those that took part).

    ``started``/``closed``: scheduler clock when the first worker began the round and when the
    last one had its update; ``planned_seconds``: the sync point the planner aimed at, from
    ``started``.
    """
    losses = {w.worker_id: w.mean_loss for w in workers if w.mean_loss is not None}
    weights = {w.worker_id: w.sample_count for w in workers}
    total = sum(weights[k] for k in losses)
    loss_mean = sum(losses[k] * weights[k] for k in losses) / total if total else None
    if loss_mean is None and losses:
        loss_mean = sum(losses.values()) / len(losses)
    cycle = sum(w.end - w.started_at for w in workers if w.end is not None and w.started_at is not None)
    arrived = {w.worker_id: w.arrived_at - started for w in workers if w.arrived_at is not None}
    last = max(arrived.values(), default=0.0) + started
    # Each worker's time from its arrival until it had the update: idle while the slowest one
    # was still training, then the sync itself (push, aggregation, pull). A round that closed by
    # quorum before a late arrival has no waiting in it for those who were done by then.
    waited = synced = 0.0
    for w in workers:
        if w.arrived_at is not None and w.end is not None:
            waited += max(0.0, min(last, w.end) - w.arrived_at)
            synced += max(0.0, w.end - max(last, w.arrived_at))
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
        "slices_skipped": sum(w.slices_skipped for w in workers),
        "train_seconds": round(sum(w.train_seconds for w in workers), 4),
        "communication_seconds": round(sum(w.send_seconds + w.receive_seconds for w in workers), 4),
        "cycle_seconds": round(cycle, 4),
        "arrival_seconds": {w: round(t, 4) for w, t in sorted(arrived.items())},
        "sync_wait_seconds": round(max(arrived.values()) - min(arrived.values()), 4) if arrived else 0.0,
        "waiting_seconds": round(waited, 4),
        "sync_seconds": round(synced, 4),
        "planned_seconds": None if planned_seconds is None else round(planned_seconds, 4),
        "wall_seconds": round(closed - started, 4),
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
    """Whole-run figures.

    * ``stall_fraction``: time waiting for data slices / training time, summed over workers
      and rounds.
    * ``compute_utilization``: Σ step time / Σ each worker's round time (scheduler clock, from
      the moment it began the round until it had the round's update: training, waiting for the
      others, push, aggregation, pull — everything but the run's start-up).
    * ``sync_wait_fraction``: median over rounds of (last arrival − first arrival at the sync
      point) / round wall time — how long the first worker to be done waited for the slowest.
    * ``round_seconds``: median round wall time (first worker began → last one had the update).
    * ``load_average``: median of the scheduler host's 1-minute load average at the rounds' ends
      (0.0 when the lines do not carry it).
    * Where the workers' round time went besides steps (shares of Σ round time):
      ``waiting_share`` (at the sync point, for the slowest worker), ``sync_share`` (from the
      slowest worker's arrival until each had the update: push, aggregation, pull) and
      ``other_share`` (the rest: between batches — data, progress reports, handing the step to
      its thread — and from the update to the first batch, from the last batch to the push).
    """
    compute = sum(line.get("compute_seconds", 0.0) for line in lines)
    wait = sum(line.get("data_wait_seconds", 0.0) for line in lines)
    train = sum(line.get("train_seconds", 0.0) for line in lines)
    cycle = sum(line.get("cycle_seconds", 0.0) for line in lines)
    if train <= 0 or cycle <= 0:
        raise ValueError(
            "the metrics carry no training or round time (train_seconds, cycle_seconds); they predate these figures"
        )
    waits = [
        line["sync_wait_seconds"] / line["wall_seconds"]
        for line in lines
        if len(line.get("arrival_seconds", {})) > 1 and line.get("wall_seconds", 0.0) > 0
    ]
    waiting = sum(line.get("waiting_seconds", 0.0) for line in lines)
    synced = sum(line.get("sync_seconds", 0.0) for line in lines)
    loads = [line["load_average"] for line in lines if "load_average" in line]
    return {
        "stall_fraction": wait / train,
        "compute_utilization": compute / cycle,
        "waiting_share": waiting / cycle,
        "sync_share": synced / cycle,
        "other_share": 1.0 - (compute + waiting + synced) / cycle,
        "sync_wait_fraction": statistics.median(waits) if waits else 0.0,
        "round_seconds": statistics.median(line["wall_seconds"] for line in lines),
        "load_average": statistics.median(loads) if loads else 0.0,
        "rounds": float(len(lines)),
    }
