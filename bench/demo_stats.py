"""The demo's data stall fraction and compute utilization, read from ``demo-out/metrics.jsonl``
(the provider ``bench.external.demo_data`` looks for; run ``make demo`` first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.external import NotMeasured
from tendril.scheduler.metrics import read_metrics, run_stats

METRICS = Path("demo-out/metrics.jsonl")


def measure(workdir: Path) -> dict[str, Any]:
    if not METRICS.exists():
        raise NotMeasured(f"{METRICS} is missing: run `make demo` first")
    try:
        return run_stats(read_metrics(METRICS))
    except ValueError as exc:
        raise NotMeasured(f"{METRICS}: {exc}") from exc
