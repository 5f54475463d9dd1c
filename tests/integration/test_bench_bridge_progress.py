"""The bench's ReportProgress figure end to end, with few calls: three real processes, every
reply checked, nothing left running (the figure itself is timed only by ``make bench``)."""

from __future__ import annotations

from pathlib import Path

from bench.bridge_progress import measure


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if text in args:
            found.append(args)
    return found


def test_measure_reports_every_route_and_cleans_up(tmp_path: Path) -> None:
    got = measure(tmp_path, calls=30, warmup=5)

    assert got["calls"] == 30 and got["warmup_calls"] == 5
    for route in ("bridge", "bare", "two_hop"):
        summary = got["summary_ms"][route]
        assert 0 < summary["min_ms"] <= summary["p50_ms"] <= summary["p99_ms"]
    assert got["p50_ms"] == got["summary_ms"]["bridge"]["p50_ms"]
    assert got["baseline_p50_ms"] == got["summary_ms"]["bare"]["p50_ms"]
    assert got["two_hop_baseline_p50_ms"] == got["summary_ms"]["two_hop"]["p50_ms"]
    cpu = got["cpu_us_per_call"]
    assert set(cpu) == {"bridge", "bare", "two_hop"}
    assert set(cpu["bridge"]) == {"client", "bridge_process", "scheduler_process"}
    assert _processes_mentioning(str(tmp_path)) == []
