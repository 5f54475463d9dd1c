"""Hooks for figures that other parts of Tendril measure: they plug in, this prints them.

Two figures come from elsewhere:

* ``bridge_report_progress`` — job bridge ``ReportProgress`` round trip, p50 and p99 (target
  p50 ≤ 1 ms). Provider: a module ``bench.bridge_progress`` with ``measure(workdir) -> dict``
  returning ``{"p50_ms": float, "p99_ms": float, "calls": int}`` (and optionally a
  ``"baseline_p50_ms"`` of a bare unary call on the same machine).
* ``demo_data`` — the demo's data stall fraction (target ≤ 1 %), the time the workers wait for
  the slowest one at the sync point (target ≤ 5 % of a round, median over rounds) and compute
  utilization (step time / the workers' round time, target ≥ 92 %), with the load average of
  the run beside them. Provider: a module ``bench.demo_stats`` with ``measure(workdir) -> dict``
  returning ``{"stall_fraction": float, "sync_wait_fraction": float, "compute_utilization":
  float}`` and optionally ``waiting_share``, ``sync_share``, ``other_share``, ``round_seconds``,
  ``load_average`` (e.g. read from ``demo-out/metrics.jsonl``; see
  ``tendril.scheduler.metrics.run_stats``).

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


DEMO_FIGURES = ("demo data stall fraction", "demo sync wait (slowest worker)", "demo compute utilization")


def demo_data(workdir: Path) -> list[Figure]:
    """The demo's data stall fraction, wait for the slowest worker, and compute utilization."""
    module, missing = _provider("bench.demo_stats", DEMO_FIGURES[0])
    if module is None:
        return [Figure.not_measured(name, missing) for name in DEMO_FIGURES]
    try:
        got = module.measure(workdir)
    except NotMeasured as exc:
        return [Figure.not_measured(name, str(exc)) for name in DEMO_FIGURES]
    stall = float(got["stall_fraction"])
    wait = float(got["sync_wait_fraction"])
    utilization = float(got["compute_utilization"])
    load = f"load average {got['load_average']:.2f} (median at round ends)" if got.get("load_average") else ""
    shares = (
        f"waiting {100 * got['waiting_share']:.1f} %, sync {100 * got['sync_share']:.1f} %, between batches and "
        f"around the sync {100 * got['other_share']:.1f} %"
        if "other_share" in got
        else ""
    )
    return [
        Figure(DEMO_FIGURES[0], round(100 * stall, 3), "%", target="≤ 1 %", ok=stall <= 0.01, details=dict(got)),
        Figure(
            DEMO_FIGURES[1],
            round(100 * wait, 2),
            "%",
            target="≤ 5 %",
            ok=wait <= 0.05,
            note="; ".join(
                x
                for x in (
                    "median over rounds of (last − first arrival at the sync point) / round wall time",
                    f"round {got['round_seconds']:.2f} s" if "round_seconds" in got else "",
                    load,
                )
                if x
            ),
            details=dict(got),
        ),
        Figure(
            DEMO_FIGURES[2],
            round(100 * utilization, 1),
            "%",
            target="≥ 92 %",
            ok=utilization >= 0.92,
            note="; ".join(x for x in ("step time / the workers' round time", shares, load) if x),
            details=dict(got),
        ),
    ]
