"""The bench's demo figures: wait for the slowest worker and compute utilization, with targets,
read from demo-out/metrics.jsonl (written here; the demo itself runs only in `make demo`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.external import demo_data
from tendril.scheduler.metrics import MetricsFile, WorkerRound, round_line


def _round(index: int, arrivals: tuple[float, float, float], compute: float) -> dict[str, object]:
    workers = []
    for name, arrived in zip(("a", "b", "c"), arrivals, strict=True):
        w = WorkerRound(name, compute_seconds=compute, train_seconds=arrived, data_wait_seconds=0.01)
        w.started_at, w.arrived_at, w.received_at = 0.0, arrived, 4.1
        workers.append(w)
    line = round_line(index, workers, started=0.0, closed=4.1)
    line["load_average"] = 3.0 + index
    return line


def test_demo_figures_carry_targets_and_the_load_average(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    metrics = MetricsFile(tmp_path / "demo-out" / "metrics.jsonl")
    for i, arrivals in enumerate([(3.9, 4.0, 4.0), (3.95, 4.0, 4.0), (3.0, 4.0, 4.0)]):
        metrics.append(_round(i, arrivals, 3.8))
    stall, wait, utilization = demo_data(tmp_path)
    assert wait.name == "demo sync wait (slowest worker)" and wait.target == "≤ 5 %"
    assert wait.value == pytest.approx(100 * 0.1 / 4.1, abs=0.01) and wait.ok  # the median round
    assert "load average 4.00" in wait.note
    assert utilization.target == "≥ 92 %" and utilization.value == pytest.approx(100 * 3.8 / 4.1, abs=0.1)
    assert utilization.ok and "waiting" in utilization.note and "load average" in utilization.note
    assert stall.ok and stall.target == "≤ 1 %"
    metrics.append(_round(3, (1.0, 4.0, 4.0), 1.0))
    metrics.append(_round(4, (1.0, 4.0, 4.0), 1.0))
    _, wait, utilization = demo_data(tmp_path)
    assert wait.ok is False and utilization.ok is False


def test_without_a_demo_run_nothing_is_made_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    figures = demo_data(tmp_path)
    assert [f.value for f in figures] == [None, None, None]
    assert all("make demo" in f.note for f in figures)
