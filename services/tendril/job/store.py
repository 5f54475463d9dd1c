"""Job records in SQLite (WAL) at ``<state_dir>/jobs.db`` (no gRPC here).

Every state change goes through :meth:`JobStore.transition`, which checks the state machine and
updates the row only if it is still in the state the caller saw, so two writers can never
both end a job.

Beside the records, table ``job_runtime`` keeps what a restarted JobService needs to re-adopt
a running job (:class:`Runtime`: its shim's pid and start time, its bridge token). A row is
written in the same transaction that makes the job RUNNING and deleted in the one that ends
it, so it exists exactly while the job runs.

NOTE (the bridge token): it is stored here, not in the work dir, because the work dir is the
executor's (it may copy or upload it, ``job.keep_work_dirs`` keeps it) while the state dir is
the worker's alone: the database and its ``-wal``/``-shm`` files are made 0600 (SQLite gives
those the database file's mode) in the 0700 state dir. The token is never logged and never
part of a :class:`JobRecord`, so no RPC returns it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.job.errors import JobError, JobReason, JobRecordReason
from tendril.job.model import JobRecord, JobState, check_transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    lease_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    executor_class TEXT NOT NULL,
    executor_name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    work_dir TEXT NOT NULL,
    config_json TEXT NOT NULL,
    coordinator_address TEXT NOT NULL,
    timeout_seconds REAL NOT NULL,
    exit_code INTEGER,
    reason TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    pid INTEGER,
    pid_create_time REAL,
    progress_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS job_runtime (
    job_id TEXT PRIMARY KEY,
    shim_pid INTEGER NOT NULL,
    shim_create_time REAL NOT NULL,
    bridge_token TEXT NOT NULL,
    stop_state TEXT,
    stop_reason TEXT
);
"""
DB_MODE = 0o600
SQLITE_HEADER = b"SQLite format 3\x00"
DAMAGED_ADVICE = "stop the worker, move the file aside (it ends the jobs it records) and start it again"

_COLUMNS = (
    "job_id, lease_id, owner_id, executor_class, executor_name, state, created_at, work_dir, config_json, "
    "coordinator_address, timeout_seconds, exit_code, reason, started_at, finished_at, pid, pid_create_time, "
    "progress_json"
)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What a restarted JobService needs to re-adopt a running job (kept only while it runs)."""

    shim_pid: int
    shim_create_time: float
    bridge_token: str = dataclasses.field(repr=False)
    stop: tuple[JobState, str] | None = None  # a stop asked for (cancel, lease end) that had not ended it yet


def _row_to_record(row: tuple[Any, ...]) -> JobRecord:
    (
        job_id,
        lease_id,
        owner_id,
        executor_class,
        executor_name,
        state,
        created_at,
        work_dir,
        config_json,
        coordinator_address,
        timeout_seconds,
        exit_code,
        reason,
        started_at,
        finished_at,
        pid,
        pid_create_time,
        progress_json,
    ) = row
    return JobRecord(
        job_id=job_id,
        lease_id=lease_id,
        owner_id=owner_id,
        executor_class=executor_class,
        executor_name=executor_name,
        state=JobState(state),
        created_at=created_at,
        work_dir=work_dir,
        config=json.loads(config_json),
        coordinator_address=coordinator_address,
        timeout_seconds=timeout_seconds,
        exit_code=exit_code,
        reason=reason,
        started_at=started_at,
        finished_at=finished_at,
        pid=pid,
        pid_create_time=pid_create_time,
        progress=json.loads(progress_json),
    )


def _record_values(r: JobRecord) -> tuple[Any, ...]:
    return (
        r.job_id,
        r.lease_id,
        r.owner_id,
        r.executor_class,
        r.executor_name,
        r.state.value,
        r.created_at,
        r.work_dir,
        json.dumps(r.config),
        r.coordinator_address,
        r.timeout_seconds,
        r.exit_code,
        r.reason,
        r.started_at,
        r.finished_at,
        r.pid,
        r.pid_create_time,
        json.dumps(r.progress),
    )


class JobStore:
    """The jobs table. Calls are short and synchronous; the service runs them on its event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, DB_MODE))
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(name, DB_MODE)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NOTE: NORMAL is durable across a process crash (kill -9) in WAL mode; only a power
        # loss can drop the last transactions, and a lost record then has no process either.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def check(self, *, thorough: bool = False) -> str | None:
        """Why the database cannot take jobs now (None: it can), for the readiness check.

        Cheap enough to run every second: the file's header (a file overwritten under the
        running service is caught here, while SQLite may still answer from its page cache) and
        one read; ``thorough`` adds ``PRAGMA quick_check`` (after a write failed).
        """
        try:
            with open(self.path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            return f"cannot read {self.path}: {exc.strerror or exc}"
        if header != SQLITE_HEADER:
            return f"{self.path} is damaged (not an SQLite database any more); {DAMAGED_ADVICE}"
        try:
            self._db.execute("SELECT count(*) FROM job_runtime").fetchone()
            if thorough:
                found = [str(row[0]) for row in self._db.execute("PRAGMA quick_check")]
                if found != ["ok"]:
                    return f"{self.path} is damaged ({'; '.join(found[:3])}); {DAMAGED_ADVICE}"
        except sqlite3.Error as exc:
            return f"{self.path} fails: {exc}"
        return None

    def insert(self, record: JobRecord) -> None:
        """Add a new job; ALREADY_EXISTS when the id was used before on this worker."""
        try:
            self._db.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 18)})", _record_values(record))
        except sqlite3.IntegrityError as exc:
            raise JobError(
                ErrorKind.ALREADY_EXISTS,
                f"job {record.job_id} already exists on this worker; job ids are never reused, pick a new one",
                reason=JobReason.JOB_EXISTS,
                metadata={"job_id": record.job_id},
            ) from exc

    def delete_pending(self, job_id: str) -> None:
        """Forget a job whose dispatch failed before its executor started (nothing else may be deleted)."""
        self._db.execute("DELETE FROM jobs WHERE job_id = ? AND state = ?", (job_id, JobState.PENDING.value))

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _row_to_record(row) if row else None

    def exists(self, job_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None

    def list(self, states: Iterable[JobState] = (), limit: int = 100) -> list[JobRecord]:
        """Newest first; only ``states`` when given."""
        wanted = [s.value for s in states]
        sql = f"SELECT {_COLUMNS} FROM jobs"
        args: list[Any] = []
        if wanted:
            sql += f" WHERE state IN ({', '.join('?' * len(wanted))})"
            args.extend(wanted)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        args.append(limit)
        return [_row_to_record(row) for row in self._db.execute(sql, args)]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def runtime(self, job_id: str) -> Runtime | None:
        """The re-adoption record of a running job (None when it has none)."""
        row = self._db.execute(
            "SELECT shim_pid, shim_create_time, bridge_token, stop_state, stop_reason FROM job_runtime "
            "WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        stop = (JobState(row[3]), str(row[4] or "")) if row[3] else None
        return Runtime(int(row[0]), float(row[1]), str(row[2]), stop)

    def note_stop(self, job_id: str, state: JobState, reason: str) -> None:
        """Remember that a running job was asked to end as ``state`` (so a restart still ends it so)."""
        self._db.execute(
            "UPDATE job_runtime SET stop_state = ?, stop_reason = ? WHERE job_id = ?", (state.value, reason, job_id)
        )

    def transition(
        self, record: JobRecord, new: JobState, *, runtime: Runtime | None = None, **fields: Any
    ) -> JobRecord:
        """Move ``record`` to ``new`` (setting ``fields`` too) if the state machine allows it.

        ``runtime`` is stored with a move to RUNNING; a move to an end state drops the job's
        runtime in the same transaction. Returns the updated record. Raises JobError
        FAILED_PRECONDITION for an illegal move or when the stored state is no longer the one
        ``record`` shows.
        """
        check_transition(record.job_id, record.state, new)
        updated = record.copy()
        updated.state = new
        for key, value in fields.items():
            if not hasattr(updated, key):
                raise AttributeError(f"JobRecord has no field {key!r}")
            setattr(updated, key, value)
        values = _record_values(updated)
        assignments = ", ".join(f"{c.strip()} = ?" for c in _COLUMNS.split(",")[1:])
        with self._transaction():
            cursor = self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE job_id = ? AND state = ?",
                (*values[1:], record.job_id, record.state.value),
            )
            changed = cursor.rowcount == 1
            if changed and runtime is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO job_runtime (job_id, shim_pid, shim_create_time, bridge_token) "
                    "VALUES (?, ?, ?, ?)",
                    (record.job_id, runtime.shim_pid, runtime.shim_create_time, runtime.bridge_token),
                )
            if changed and new.terminal:
                self._db.execute("DELETE FROM job_runtime WHERE job_id = ?", (record.job_id,))
        if not changed:
            current = self.get(record.job_id)
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"job {record.job_id} is {current.state.value if current else 'gone'}, not {record.state.value}; "
                "it changed meanwhile",
                reason=JobRecordReason.STATE_CHANGED,
                metadata={"job_id": record.job_id},
            )
        return updated

    def set_progress(self, job_id: str, progress: dict[str, float]) -> None:
        self._db.execute("UPDATE jobs SET progress_json = ? WHERE job_id = ?", (json.dumps(progress), job_id))
