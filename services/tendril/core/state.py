"""The worker's state dir: what lives there, and whether it can be used.

``tendril worker run`` checks it (:func:`check_state`) before any service starts, and a
service that meets an unusable database or folder at start asks the same checks which file is
the culprit (:func:`diagnose`). Either way the worker stops with one line that names the file
and the way out, and exit status 2, which the systemd unit does not restart (restarting would
meet the same file). Only a problem a restart cannot cure counts: a database SQLite calls
damaged (SQLITE_CORRUPT, SQLITE_NOTADB, or a failed ``PRAGMA quick_check``), or a folder or
database that cannot be written (read-only file system, permissions, no space left).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sqlite3
import tempfile
from pathlib import Path

from tendril.core.errors import CoreReason, StateError

LEASES_DB = "leases.db"
JOBS_DB = "jobs.db"
PROBE_BYTES = 4096  # written (and synced) to prove a folder takes data, not only names


@dataclasses.dataclass(frozen=True)
class Database:
    """One SQLite database of the state dir."""

    name: str  # file name under the state dir
    service: str  # the process that owns it
    holds: str  # what is in it
    loses: str  # what moving it aside forgets


DATABASES: tuple[Database, ...] = (
    Database(
        LEASES_DB,
        "LeaseService",
        "the lease ledger",
        "the leases schedulers hold on this worker are forgotten (they ask for new offers)",
    ),
    Database(
        JOBS_DB,
        "JobService",
        "the job records",
        "the records of the jobs that ran here are forgotten (running executors are not taken back)",
    ),
)

# Folders under the state dir that services write, checked when they exist.
FOLDERS = ("run", "logs", "cache", "paramserver")


def check_database(path: Path, db: Database, *, exclusive: bool = True) -> None:
    """Raise StateError when the database at ``path`` (if any) is damaged or cannot be written.

    ``exclusive``: no other process should have it open now (before the services start), so
    the write lock is taken too; False when the services run (a service asking what failed).
    """
    if not path.exists():
        return
    try:
        # NOTE: mode=rw never creates a file; quick_check reads every page (jobs.db and
        # leases.db stay small: milliseconds); BEGIN IMMEDIATE takes the write lock, so a
        # database that opens but cannot be written is found too.
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=5.0)
        try:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise _damaged(path, db, "; ".join(problems[:3]))
            if exclusive:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or not isinstance(exc, sqlite3.OperationalError):
            raise _damaged(path, db, str(exc)) from exc
        if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            if not exclusive:
                return  # in use by a running service: not this check's business
            raise StateError(
                f"{path} is locked by another process ({exc}); stop whatever else opened it (a service of a "
                "worker that was not stopped cleanly) and start again",
                reason=CoreReason.STATE_NOT_WRITABLE,
                path=str(path),
            ) from exc
        raise not_writable(path, str(exc)) from exc


def _damaged(path: Path, db: Database, detail: str) -> StateError:
    return StateError(
        f"{path} ({db.holds} of the {db.service}) is damaged: {detail}. Move it aside (mv {path} {path}.damaged) "
        f"and start the worker again: {db.loses}",
        reason=CoreReason.STATE_DAMAGED,
        path=str(path),
    )


def not_writable(path: Path, detail: str, code: int | None = None) -> StateError:
    """The error for ``path`` that cannot be written (``code``: the errno, which picks the advice)."""
    if code == errno.ENOSPC or code == errno.EDQUOT:
        fix = "free disk space there (or lower data_fetcher.cache_bytes), then start the worker again"
    elif code == errno.EROFS:
        fix = "its file system is mounted read-only: remount it read-write, then start the worker again"
    else:
        fix = "give the worker's user write access to it, or set worker.state_dir / worker.work_dir elsewhere"
    return StateError(f"cannot write {path}: {detail}; {fix}", reason=CoreReason.STATE_NOT_WRITABLE, path=str(path))


def check_writable(folder: Path) -> None:
    """Raise StateError unless a file can be created in ``folder`` and take a few bytes."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".tendril-write-check.") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise not_writable(folder, exc.strerror or str(exc), exc.errno) from exc


def check_state(state_dir: Path, work_dir: Path | None = None, *, exclusive: bool = True) -> None:
    """Every check: the state dir, its folders and the work dir take data, no database is damaged."""
    folders = [state_dir, *(state_dir / name for name in FOLDERS)]
    if work_dir is not None:
        folders.append(work_dir)
    for folder in folders:
        if folder.is_dir():
            check_writable(folder)
        elif folder.exists():
            raise StateError(
                f"{folder} is not a folder, but the worker keeps a folder there; move it aside "
                f"(mv {folder} {folder}.moved) and start the worker again",
                reason=CoreReason.STATE_DAMAGED,
                path=str(folder),
            )
    for db in DATABASES:
        check_database(state_dir / db.name, db, exclusive=exclusive)


def diagnose(state_dir: Path, work_dir: Path | None = None) -> StateError | None:
    """The state problem behind a service's failed start, if it is one (None: look elsewhere).

    The other services run meanwhile: their databases are read, never locked.
    """
    try:
        check_state(state_dir, work_dir, exclusive=False)
    except StateError as exc:
        return exc
    return None
