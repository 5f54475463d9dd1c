"""Readiness of the JobService: the disk and database check, refused dispatches, ends kept in memory."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tendril.core.errors import ErrorKind
from tendril.job import readiness
from tendril.job.errors import JobError
from tendril.job.model import JobState
from tendril.job.store import JobStore
from tests.unit.test_jobs_core import OWNER, Harness


def test_a_writable_folder_with_room_is_fine(tmp_path: Path) -> None:
    assert readiness.check_folder(tmp_path / "new", 0) is None
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / readiness.PROBE_NAME).exists()


def test_too_little_free_space_is_named(tmp_path: Path) -> None:
    why = readiness.check_folder(tmp_path, 2**62)
    assert why is not None and f"free under {tmp_path}, less than job.min_free_mib" in why


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.ENOSPC, "free disk space there"), (errno.EROFS, "remount it read-write"), (errno.EACCES, "write access")],
)
def test_a_failing_write_is_named_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, advice: str
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(readiness.os, "write", refuse)
    why = readiness.check_folder(tmp_path, 0)
    assert why is not None and why.startswith(f"cannot write {tmp_path}: {os.strerror(code)}") and advice in why
    assert not (tmp_path / readiness.PROBE_NAME).exists()


def test_the_store_check_sees_an_overwritten_header_and_a_damaged_file(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    assert store.check() is None and store.check(thorough=True) is None
    with open(store.path, "r+b") as f:
        header = f.read(16)
        f.seek(0)
        f.write(b"x" * 16)
    why = store.check()
    assert why is not None and "is damaged (not an SQLite database any more)" in why and "move the file aside" in why
    with open(store.path, "r+b") as f:
        f.write(header)
    assert store.check() is None
    store.close()


async def test_an_unready_worker_refuses_dispatches_and_comes_back(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    told: list[tuple[bool, str]] = []

    async def listen(ready: bool, why: str) -> None:
        told.append((ready, why))

    h.manager.on_readiness = listen
    assert await h.manager.check_ready() == ""
    h.manager.config.job.min_free_mib = 2**40  # more than any disk has
    why = await h.manager.check_ready()
    assert "less than job.min_free_mib" in why and told == [(False, why)]
    with pytest.raises(JobError) as refused:
        await h.dispatch("u-1")
    assert refused.value.kind is ErrorKind.UNAVAILABLE and refused.value.reason == "CANNOT_RUN_JOBS"
    assert "this worker cannot run jobs now: only" in refused.value.message
    h.nothing_left("u-1")
    h.manager.config.job.min_free_mib = 0
    assert await h.manager.check_ready() == "" and told[-1] == (True, "")
    assert (await h.dispatch("u-1")).state is JobState.RUNNING
    await h.wait_end("u-1")


async def test_a_dispatch_failing_on_the_database_makes_the_worker_unready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)

    def full(record: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(h.store, "insert", full)
    with pytest.raises(JobError) as failed:
        await h.dispatch("x-1")
    assert failed.value.kind is ErrorKind.UNAVAILABLE and failed.value.reason == "CANNOT_RUN_JOBS"
    assert "database or disk is full" in h.manager.unready
    monkeypatch.undo()
    # The check passes now, but a failed dispatch holds the worker back a while (then a
    # thorough check decides).
    assert await h.manager.check_ready() != ""
    h.manager._suspect_until = 0.001  # the hold is over
    assert await h.manager.check_ready() == ""


async def test_an_end_that_cannot_be_written_is_answered_from_memory_then_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    await h.dispatch("e-1", name="sleep")
    real = h.store.transition

    def full(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(h.store, "transition", full)
    ended = await h.manager.cancel(OWNER, "e-1")
    assert ended.state is JobState.CANCELLED  # never RUNNING, though jobs.db still says so
    assert h.store.get("e-1").state is JobState.RUNNING  # type: ignore[union-attr]
    assert h.manager.get("e-1").state is JobState.CANCELLED
    assert [r.job_id for r in h.manager.list([JobState.CANCELLED])] == ["e-1"]
    assert h.manager.list([JobState.RUNNING]) == []
    assert "could not be recorded" in h.manager.unready
    monkeypatch.setattr(h.store, "transition", real)
    h.manager._suspect_until = 0.001
    assert await h.manager.check_ready() == ""
    stored = h.store.get("e-1")
    assert stored is not None and stored.state is JobState.CANCELLED and stored.finished_at == ended.finished_at
    assert h.manager.get("e-1").state is JobState.CANCELLED
