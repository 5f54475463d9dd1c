"""The SQLite job store: round trip, uniqueness, guarded transitions, listing, re-adoption records."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tendril.core.errors import ErrorKind
from tendril.job.errors import JobError
from tendril.job.model import JobRecord, JobState
from tendril.job.store import JobStore, Runtime


def _record(job_id: str, created: float = 1.0) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        lease_id="lease-1",
        owner_id="sched",
        executor_class="example",
        executor_name="echo",
        state=JobState.PENDING,
        created_at=created,
        work_dir=f"/w/job-{job_id}",
        config={"a": 1.0, "nested": {"b": [1, "x"]}},
        coordinator_address="127.0.0.1:1",
        timeout_seconds=3.0,
    )


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.insert(_record("a"))
    running = store.transition(store.get("a"), JobState.RUNNING, started_at=2.0, pid=123, pid_create_time=5.5)
    store.close()
    again = JobStore(tmp_path / "jobs.db")
    got = again.get("a")
    assert got == running
    assert got.config == {"a": 1.0, "nested": {"b": [1, "x"]}}
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_duplicate_id_is_already_exists(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.insert(_record("a"))
    with pytest.raises(JobError) as err:
        store.insert(_record("a"))
    assert err.value.kind is ErrorKind.ALREADY_EXISTS


def test_transitions_are_checked_and_guarded(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.insert(_record("a"))
    pending = store.get("a")
    with pytest.raises(JobError) as illegal:
        store.transition(pending, JobState.SUCCEEDED)
    assert illegal.value.reason == "ILLEGAL_TRANSITION"
    running = store.transition(pending, JobState.RUNNING)
    # A writer holding the stale PENDING view cannot move the job any more.
    with pytest.raises(JobError) as stale:
        store.transition(pending, JobState.CANCELLED)
    assert stale.value.reason == "STATE_CHANGED"
    done = store.transition(running, JobState.SUCCEEDED, exit_code=0, reason="ok", finished_at=9.0)
    with pytest.raises(JobError):
        store.transition(done, JobState.FAILED)
    assert store.get("a").state is JobState.SUCCEEDED


def test_delete_pending_only_deletes_pending(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.insert(_record("a"))
    store.insert(_record("b"))
    store.transition(store.get("b"), JobState.RUNNING)
    store.delete_pending("a")
    store.delete_pending("b")
    assert store.get("a") is None
    assert store.get("b") is not None


def test_list_newest_first_with_state_filter_and_limit(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    for i, job_id in enumerate(["a", "b", "c"]):
        store.insert(_record(job_id, created=float(i)))
    store.transition(store.get("b"), JobState.RUNNING)
    assert [r.job_id for r in store.list()] == ["c", "b", "a"]
    assert [r.job_id for r in store.list(limit=2)] == ["c", "b"]
    assert [r.job_id for r in store.list([JobState.RUNNING])] == ["b"]
    assert [r.job_id for r in store.list([JobState.PENDING, JobState.RUNNING])] == ["c", "b", "a"]


def test_runtime_lives_exactly_while_the_job_runs_and_the_db_is_private(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.insert(_record("a"))
    assert store.runtime("a") is None
    running = store.transition(store.get("a"), JobState.RUNNING, runtime=Runtime(4321, 12.5, "tok-secret"), pid=7)
    assert store.runtime("a") == Runtime(4321, 12.5, "tok-secret")
    assert "tok-secret" not in repr(store.runtime("a")), "the bridge token never shows in a repr (logs)"
    assert "tok-secret" not in repr(store.get("a"))
    store.close()
    again = JobStore(tmp_path / "jobs.db")
    assert again.runtime("a") == Runtime(4321, 12.5, "tok-secret"), "a restarted JobService finds it"
    for name in ("jobs.db", "jobs.db-wal", "jobs.db-shm"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    again.note_stop("a", JobState.CANCELLED, "owner said stop")
    assert again.runtime("a") == Runtime(4321, 12.5, "tok-secret", (JobState.CANCELLED, "owner said stop"))
    again.transition(running, JobState.SUCCEEDED, exit_code=0)
    assert again.runtime("a") is None, "the token goes with the job's end"
    again.close()


def test_a_refused_transition_stores_no_runtime(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.insert(_record("a"))
    pending = store.get("a")
    store.transition(pending, JobState.CANCELLED)
    with pytest.raises(JobError):
        store.transition(pending, JobState.RUNNING, runtime=Runtime(1, 1.0, "t"))
    assert store.runtime("a") is None


def test_an_existing_world_readable_db_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    os.chmod(path, 0o644)
    JobStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
