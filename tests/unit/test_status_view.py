"""`tendril status` screen and JSON from canned snapshots (no processes, no gRPC)."""

from __future__ import annotations

import json

import pytest

from tendril.cli.status_model import (
    Amount,
    CacheStats,
    Capacity,
    JobRow,
    LeaseRow,
    ServiceHealth,
    Snapshot,
    SupervisorInfo,
)
from tendril.cli.status_view import duration, progress_text, render, size


def _snapshot(**changes: object) -> Snapshot:
    snap = Snapshot(
        worker_id="worker-a",
        location="local",
        taken_at=1_800_000_000.0,
        services=[
            ServiceHealth("lease", "127.0.0.1:50052", "SERVING", state="serving", pid=11, restarts=0),
            ServiceHealth("job", "127.0.0.1:50053", "SERVING", state="serving", pid=12, restarts=2, last_exit_code=-9),
        ],
        supervisor=SupervisorInfo(10, True, "serving", True, 1_799_999_000.0, 1_799_999_001.0, "/s/run/status.json"),
        leases=[
            LeaseRow("lease-1", "sched-a", "renewable", 8.25, Amount(2, 4, 10, 1), 120.0, "req-1"),
            LeaseRow("lease-2", "sched-b", "temporary", -0.5, Amount(1, 1, 0, 0), 100.0, "req-2"),
        ],
        jobs=[
            JobRow(
                "job-2", "running", "train/diloco", "sched-a", "lease-1", 3725.0, {"loss": 2.3125, "round": 3}, None, ""
            ),
            JobRow("job-1", "failed", "example/echo", "sched-a", "lease-1", 90061.0, {}, -15, "cancelled"),
        ],
        capacity=Capacity(Amount(8, 32, 100, 1), Amount(3, 5, 10, 1), Amount(5, 27, 90, 0)),
        data_cache=CacheStats(3, 1, 3 * 1024**2, 2 * 1024**3, 5 * 1024**2, 0.25, 0, 1, 1, 0),
    )
    for key, value in changes.items():
        setattr(snap, key, value)
    return snap


def test_screen_shows_every_section() -> None:
    screen = render(_snapshot())
    lines = screen.splitlines()
    assert lines[0] == "worker worker-a (local) — all serving"
    assert "supervisor pid 10 serving" in lines[1] and "registered in the gateway" in lines[1]
    (jobs_line,) = [ln for ln in lines if ln.startswith("  job ")]
    assert jobs_line.split()[:5] == ["job", "127.0.0.1:50053", "SERVING", "12", "2"]
    assert "last exit SIGKILL" in jobs_line  # restarted once at least: the last crash is shown
    (reserved,) = [ln for ln in lines if ln.startswith("  reserved")]
    assert reserved.split() == ["reserved", "3", "5", "10", "1"]
    (lease1,) = [ln for ln in lines if "lease-1" in ln]
    assert lease1.split()[:4] == ["lease-1", "sched-a", "renewable", "8.2s"]
    assert "cpu 2, mem 4 GiB, disk 10 GiB, gpu 1" in lease1
    assert "expired 0.5s ago" in screen
    (job2,) = [ln for ln in lines if ln.startswith("  job-2")]
    assert job2.split() == ["job-2", "running", "train/diloco", "1h02m", "round=3", "loss=2.312"]
    (job1,) = [ln for ln in lines if ln.startswith("  job-1")]
    assert "failed (SIGTERM)" in job1 and "1d01h" in job1
    assert "LEASES (2)" in screen and "JOBS (2, newest first)" in screen
    assert "cached 3.0 MiB of 2.0 GiB, hits 3, misses 1 (hit rate 75%)" in screen
    assert "downloaded 5.0 MiB, resumed 1" in screen
    assert screen.endswith("\n") and not any(ln != ln.rstrip() for ln in lines)


def test_columns_line_up() -> None:
    lines = render(_snapshot()).splitlines()
    start = lines.index("SERVICES") + 1
    header, *rows = lines[start : start + 3]
    column = header.index("HEALTH")
    assert all(row[column : column + 7] == "SERVING" for row in rows)


def test_down_service_and_missing_sections() -> None:
    services = [
        ServiceHealth("lease", "127.0.0.1:50052", "DOWN", "UNAVAILABLE: connection refused", "backoff", 11, 0, -9),
        ServiceHealth("job", "127.0.0.1:50053", "NOT_SERVING"),
    ]
    snap = _snapshot(
        services=services,
        leases=None,
        capacity=None,
        jobs=[],
        data_cache=None,
        errors={"lease": "UNAVAILABLE: connection refused (at 127.0.0.1:50052)"},
    )
    assert not snap.ok
    screen = render(snap)
    assert "— 2 of 2 NOT serving" in screen.splitlines()[0]
    (leases_line,) = [ln for ln in screen.splitlines() if ln.startswith("  lease ")]
    assert "DOWN" in leases_line and "supervisor: backoff" in leases_line and "last exit SIGKILL" in leases_line
    assert "UNAVAILABLE: connection refused" in leases_line
    assert screen.count("unavailable: UNAVAILABLE: connection refused (at 127.0.0.1:50052)") == 2  # resources, leases
    assert "JOBS (0, newest first)\n  none" in screen
    assert "DATA CACHE\n  unavailable: service not part of this worker" in screen


def test_remote_worker_says_restarts_are_unknown() -> None:
    services = [ServiceHealth("lease", "10.0.0.5:50052", "SERVING")]
    snap = _snapshot(services=services, supervisor=None, location="remote", note="remote worker: restarts are unknown")
    screen = render(snap)
    assert screen.splitlines()[:2] == [
        "worker worker-a (remote) — all serving",
        "note: remote worker: restarts are unknown",
    ]
    (line,) = [ln for ln in screen.splitlines() if ln.startswith("  lease ")]
    assert line.split() == ["lease", "10.0.0.5:50052", "SERVING", "-", "-"]


def test_no_services_is_not_ok() -> None:
    assert not _snapshot(services=[]).ok


def test_json_has_the_documented_keys() -> None:
    data = json.loads(json.dumps(_snapshot().to_json()))
    assert list(data) == [
        "schema",
        "ok",
        "worker_id",
        "location",
        "taken_at",
        "services",
        "supervisor",
        "note",
        "leases",
        "jobs",
        "resources",
        "data_cache",
        "errors",
    ]
    assert data["schema"] == 1 and data["ok"] is True
    assert set(data["services"][0]) == {
        "name",
        "address",
        "health",
        "error",
        "state",
        "pid",
        "restarts",
        "last_exit_code",
    }
    assert set(data["leases"][0]) == {
        "lease_id",
        "owner_id",
        "kind",
        "expires_in_seconds",
        "resources",
        "price",
        "request_id",
    }
    assert set(data["jobs"][0]) == {
        "job_id",
        "state",
        "executor",
        "owner_id",
        "lease_id",
        "age_seconds",
        "progress",
        "exit_code",
        "reason",
    }
    assert set(data["resources"]) == {"total", "reserved", "free"}
    assert data["resources"]["free"] == {"cpu": 5, "memory_gib": 27, "storage_gib": 90, "gpu": 0}
    assert data["data_cache"]["hit_rate"] == 0.75 and data["data_cache"]["capacity_bytes"] == 2 * 1024**3
    assert set(data["supervisor"]) == {"pid", "alive", "state", "registered", "started_at", "serving_at", "status_path"}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.04, "0.0s"), (59.94, "59.9s"), (61, "1m01s"), (3600, "1h00m"), (90061, "1d01h")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("count", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024**4, "3.0 TiB")])
def test_size(count: int, text: str) -> None:
    assert size(count) == text


def test_long_progress_is_cut() -> None:
    text = progress_text({f"metric_{i}": float(i) for i in range(20)})
    assert len(text) == 48 and text.endswith("…")
    assert progress_text({}) == "-"
