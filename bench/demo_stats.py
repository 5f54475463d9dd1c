"""The demo's data stall fraction, wait for the slowest worker at the sync point and compute
utilization (with where the rest of the time went and the load average of the run), read from
``demo-out/metrics.jsonl`` (the provider ``bench.external.demo_data`` looks for; run ``make demo``
first). Definitions: ``tendril.scheduler.metrics.run_stats``."""

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
