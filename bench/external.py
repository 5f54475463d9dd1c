"""Hooks for figures that other parts of Tendril measure: they plug in, this prints them.

Two figures come from elsewhere:

* ``bridge_report_progress`` — job bridge ``ReportProgress`` round trip, p50 and p99 (target
  p50 ≤ 1 ms). Provider: a module ``bench.bridge_progress`` with ``measure(workdir) -> dict``
  returning ``{"p50_ms": float, "p99_ms": float, "calls": int}`` (and optionally a
  ``"baseline_p50_ms"`` of a bare unary call on the same machine).
* ``demo_data`` — the demo's data stall fraction (target ≤ 1 %) and compute utilization
  (step time / wall time). Provider: a module ``bench.demo_stats`` with
  ``measure(workdir) -> dict`` returning ``{"stall_fraction": float, "compute_utilization": float}``
  (e.g. read from ``demo-out/metrics.jsonl``).

When a provider is missing or cannot measure (it raises :class:`NotMeasured`), the figure is
printed as "not measured" with the reason; no number is made up.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bench.common import Figure


class NotMeasured(Exception):
    """Raised by a provider that cannot measure its figure here; the message says why."""


def _provider(module: str, name: str) -> tuple[Any, str]:
    try:
        return importlib.import_module(module), ""
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None, f"{module.replace('.', '/')}.py (which measures the {name}) is not in this tree"


def bridge_report_progress(workdir: Path) -> list[Figure]:
    """Job bridge ReportProgress round trip p50/p99."""
    name = "bridge ReportProgress round trip"
    module, missing = _provider("bench.bridge_progress", name)
    if module is None:
        return [Figure.not_measured(name, missing)]
    try:
        got = module.measure(workdir)
    except NotMeasured as exc:
        return [Figure.not_measured(name, str(exc))]
    return [
        Figure(
            f"{name} p50",
            round(got["p50_ms"], 3),
            "ms",
            baseline=got.get("baseline_p50_ms"),
            baseline_name="bare unary gRPC call" if "baseline_p50_ms" in got else "",
            target="≤ 1 ms",
            ok=got["p50_ms"] <= 1.0,
            note=f"p99 {got['p99_ms']:.3f} ms over {got.get('calls', '?')} calls"
            + (
                f"; bare two-hop route (UDS + TCP) p50 {got['two_hop_baseline_p50_ms']:.3f} ms"
                if "two_hop_baseline_p50_ms" in got
                else ""
            ),
            details=dict(got),
        )
    ]


def demo_data(workdir: Path) -> list[Figure]:
    """The demo's data stall fraction and compute utilization."""
    name = "demo data stall fraction"
    module, missing = _provider("bench.demo_stats", name)
    if module is None:
        return [
            Figure.not_measured(name, missing),
            Figure.not_measured("demo compute utilization", missing),
        ]
    try:
        got = module.measure(workdir)
    except NotMeasured as exc:
        return [
            Figure.not_measured(name, str(exc)),
            Figure.not_measured("demo compute utilization", str(exc)),
        ]
    stall = float(got["stall_fraction"])
    return [
        Figure(name, round(100 * stall, 3), "%", target="≤ 1 %", ok=stall <= 0.01, details=dict(got)),
        Figure(
            "demo compute utilization",
            round(100 * float(got["compute_utilization"]), 1),
            "%",
            note="step time / wall time",
            details=dict(got),
        ),
    ]
