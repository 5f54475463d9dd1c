"""The scheduler's run state on disk: one SQLite file under the out dir (no grpc here).

What a scheduler started again on the same out dir needs to resume its run: the run id and
the job config it was started with, the leases it held and the jobs it ran under them, each
finished round's metrics line, the slices handed out (epoch, slice, job, worker, round) and
each worker's data slot, and whether the run finished.

Every change that matters is one transaction (sqlite3 in WAL mode), so a scheduler killed at
any moment leaves the state of its last finished change. The schema
carries a version (``PRAGMA user_version``); a file of another version, or one that is not an
SQLite database, is refused with one line (:class:`StateError`).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE_FILE = "scheduler-state.db"
STATE_FILES = (STATE_FILE, f"{STATE_FILE}-wal", f"{STATE_FILE}-shm")  # the file and SQLite's WAL companions
SCHEMA_VERSION = 1

# NOTE: keys that say how this scheduler process runs and where it finds workers and data, not
# what the run trains: they may differ when the run is resumed (a new listen port, a higher
# bid, another data node address for the same data set). A table's name covers its keys.
OPERATIONAL_KEYS = frozenset(
    {
        "scheduler.listen",
        "scheduler.advertise_address",
        "scheduler.gateway",
        "scheduler.out_dir",
        "scheduler.finish_timeout_seconds",
        "allocation.bid",
        "allocation.topic",
        "allocation.request_deadline_seconds",
        "allocation.republish_seconds",
        "allocation.timeout_seconds",
        "allocation.max_lost",
        "allocation.worker",
        "allocation.parameter_server",
        "data.node",
    }
)


def operational(key: str) -> bool:
    """True for a key of OPERATIONAL_KEYS or inside one of its tables."""
    return any(key == k or key.startswith(f"{k}.") for k in OPERATIONAL_KEYS)


_SCHEMA = """
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    run_id TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    model_path TEXT NOT NULL DEFAULT ''
);
CREATE TABLE members (
    lease_id TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL,
    role TEXT NOT NULL,
    job_id TEXT NOT NULL,
    lease_address TEXT NOT NULL,
    job_address TEXT NOT NULL,
    ps_address TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE rounds (
    round INTEGER PRIMARY KEY,
    line TEXT NOT NULL
);
CREATE TABLE assignments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL,
    slice TEXT NOT NULL,
    job_id TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    round INTEGER NOT NULL
);
CREATE TABLE slots (
    worker_id TEXT PRIMARY KEY,
    slot INTEGER NOT NULL
);
"""


class StateError(Exception):
    """The state file cannot be used; ``str()`` is one line that says what to do."""


@dataclasses.dataclass(frozen=True)
class SavedMember:
    """A lease the run held and the job it ran under it."""

    lease_id: str
    worker_id: str
    role: str  # run.Role values: "train", "parameter_server"
    job_id: str
    lease_address: str
    job_address: str
    ps_address: str


@dataclasses.dataclass(frozen=True)
class SavedAssignment:
    """A slice handed to a job."""

    epoch: int
    slice: str
    job_id: str
    worker_id: str
    round: int


@dataclasses.dataclass(frozen=True)
class SliceCursor:
    """Where the slice assigner was: its epoch, the slices of that epoch already used, each worker's slot."""

    epoch: int = 0
    used: frozenset[str] = frozenset()
    slots: Mapping[str, int] = dataclasses.field(default_factory=dict)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ (operational keys left out), each as ``key: saved -> current``."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if operational(name):
            continue
        a, b = saved.get(key, "(not set)"), current.get(key, "(not set)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(config_differences(a, b, f"{name}."))
        elif a != b:
            out.append(f"{name}: {json.dumps(a)} then, {json.dumps(b)} now")
    return out


class RunStateStore:
    """The run state file of one out dir; not thread-safe (the scheduler's loop owns it)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, out_dir: Path) -> RunStateStore:
        """Open (creating it when absent) the state file of ``out_dir``; StateError when it is unusable."""
        path = out_dir / STATE_FILE
        try:
            db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit (BEGIN IMMEDIATE)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the scheduler state {path}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # NOTE: in WAL mode NORMAL keeps every committed change through a killed process (the
            # case this file is for) without an fsync per change on the event loop (0.05 ms a
            # change instead of 0.23 ms here, far more on slow disks); a power cut may lose the
            # last changes, which a resume reconciles with the parameter server's round.
            db.execute("PRAGMA synchronous=NORMAL")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise StateError(
                        f"the scheduler state {path} holds tables but no schema version; "
                        "it was not written by this scheduler: move it away"
                    )
                with _transaction(db):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StateError(
                    f"the scheduler state {path} has schema version {version}; this scheduler reads version "
                    f"{SCHEMA_VERSION}: resume it with the scheduler that wrote it, or move the file away to start anew"
                )
            problem = db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise StateError(f"the scheduler state {path} is damaged ({problem}); {_START_AFRESH}")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StateError(f"the scheduler state {path} is damaged ({exc}); {_START_AFRESH}") from exc
        except StateError:
            db.close()
            raise
        return cls(path, db)

    def close(self) -> None:
        self._db.close()

    # -- the run -----------------------------------------------------------------------------

    def saved_run(self) -> tuple[str, dict[str, Any]] | None:
        """(run id, config as it was saved), or None for a new out dir."""
        row = self._db.execute("SELECT run_id, config FROM run WHERE id = 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def begin(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Record a new run (the out dir must hold none)."""
        with self._write():
            self._db.execute(
                "INSERT INTO run (id, run_id, config, created_at) VALUES (1, ?, ?, ?)",
                (run_id, json.dumps(config, sort_keys=True), time.time()),
            )

    def finished(self) -> str | None:
        """The model path of a run that finished, else None."""
        row = self._db.execute("SELECT finished_at, model_path FROM run WHERE id = 1").fetchone()
        return None if row is None or row[0] is None else str(row[1])

    def finish(self, model_path: str) -> None:
        with self._write():
            self._db.execute("UPDATE run SET finished_at = ?, model_path = ? WHERE id = 1", (time.time(), model_path))

    # -- members -----------------------------------------------------------------------------

    def add_member(self, member: SavedMember) -> None:
        with self._write():
            self._db.execute(
                "INSERT OR REPLACE INTO members (lease_id, worker_id, role, job_id, lease_address, job_address, "
                "ps_address, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*dataclasses.astuple(member), time.time()),
            )

    def members(self, *, ended: bool = False) -> list[SavedMember]:
        """The members in the order they were accepted (those marked ended only when ``ended``)."""
        rows = self._db.execute(
            "SELECT lease_id, worker_id, role, job_id, lease_address, job_address, ps_address FROM members "
            + ("" if ended else "WHERE ended = 0 ")
            + "ORDER BY accepted_at, rowid"
        ).fetchall()
        return [SavedMember(*row) for row in rows]

    def end_members(self, lease_ids: list[str]) -> None:
        """These leases were released and their jobs stopped."""
        with self._write():
            self._db.executemany("UPDATE members SET ended = 1 WHERE lease_id = ?", [(i,) for i in lease_ids])

    def job_counter(self) -> int:
        """The highest job number handed out (job ids end in -ps<N> or -t<N>)."""
        top = 0
        for (job_id,) in self._db.execute("SELECT job_id FROM members"):
            digits = job_id.rsplit("-", 1)[-1].lstrip("pst")
            if digits.isdigit():
                top = max(top, int(digits))
        return top

    # -- rounds ------------------------------------------------------------------------------

    def add_round(self, line: Mapping[str, Any]) -> None:
        """A round finished: its metrics line (a round saved again replaces the first)."""
        with self._write():
            self._db.execute(
                "INSERT OR REPLACE INTO rounds (round, line) VALUES (?, ?)", (int(line["round"]), json.dumps(line))
            )

    def rounds(self) -> list[dict[str, Any]]:
        return [json.loads(line) for (line,) in self._db.execute("SELECT line FROM rounds ORDER BY round")]

    def keep_rounds(self, below: int, filler: list[dict[str, Any]]) -> None:
        """Forget rounds ``>= below`` and their slice assignments; add ``filler`` lines; one transaction."""
        with self._write():
            self._db.execute("DELETE FROM rounds WHERE round >= ?", (below,))
            self._db.execute("DELETE FROM assignments WHERE round >= ?", (below,))
            self._db.executemany(
                "INSERT OR REPLACE INTO rounds (round, line) VALUES (?, ?)",
                [(int(line["round"]), json.dumps(line)) for line in filler],
            )

    # -- slices ------------------------------------------------------------------------------

    def add_assignment(self, assignment: SavedAssignment, slot: int | None) -> None:
        with self._write():
            self._db.execute(
                "INSERT INTO assignments (epoch, slice, job_id, worker_id, round) VALUES (?, ?, ?, ?, ?)",
                dataclasses.astuple(assignment),
            )
            if slot is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO slots (worker_id, slot) VALUES (?, ?)", (assignment.worker_id, slot)
                )

    def assignments(self) -> list[SavedAssignment]:
        rows = self._db.execute("SELECT epoch, slice, job_id, worker_id, round FROM assignments ORDER BY seq")
        return [SavedAssignment(*row) for row in rows]

    def slice_cursor(self) -> SliceCursor:
        """The epoch of the last assignment, the slices used in it, every worker's slot."""
        row = self._db.execute("SELECT max(epoch) FROM assignments").fetchone()
        epoch = int(row[0]) if row[0] is not None else 0
        used = frozenset(s for (s,) in self._db.execute("SELECT slice FROM assignments WHERE epoch = ?", (epoch,)))
        slots = dict(self._db.execute("SELECT worker_id, slot FROM slots").fetchall())
        return SliceCursor(epoch, used, slots)

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        with _transaction(self._db):
            yield


_START_AFRESH = "move it away to start the run anew (its metrics.jsonl stays as it is)"


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
