"""SQLite persistence of live leases (WAL). Only :class:`~.ledger.Ledger` uses it, under its lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tendril.core.amounts import Amount
from tendril.core.errors import ErrorKind
from tendril.lease.errors import LeaseError, LedgerReason
from tendril.lease.model import Lease, LeaseKind

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    lease_id    TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    cpu         REAL NOT NULL,
    memory_gib  REAL NOT NULL,
    storage_gib REAL NOT NULL,
    gpu         INTEGER NOT NULL,
    price       REAL NOT NULL,
    request_id  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
)
"""

_COLUMNS = "lease_id, owner_id, kind, cpu, memory_gib, storage_gib, gpu, price, request_id, created_at, expires_at"


def _row(lease: Lease) -> tuple[Any, ...]:
    r = lease.resources
    return (
        lease.lease_id,
        lease.owner_id,
        lease.kind.value,
        r.cpu,
        r.memory_gib,
        r.storage_gib,
        r.gpu,
        lease.price,
        lease.request_id,
        lease.created_at,
        lease.expires_at,
    )


def _lease(row: tuple[Any, ...]) -> Lease:
    lease_id, owner, kind, cpu, mem, sto, gpu, price, request_id, created, expires = row
    return Lease(
        lease_id=str(lease_id),
        owner_id=str(owner),
        kind=LeaseKind(kind),
        resources=Amount(float(cpu), float(mem), float(sto), int(gpu)),
        price=float(price),
        request_id=str(request_id),
        created_at=float(created),
        expires_at=float(expires),
    )


class LeaseStore:
    """The ``leases`` table. Each write is its own committed transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._open()
        except sqlite3.Error as exc:
            raise LeaseError(
                ErrorKind.FAILED_PRECONDITION,
                f"cannot open the lease ledger {self.path}: {exc}. Check the state dir's permissions and free "
                "space; a damaged file can be moved away (its leases are then lost).",
                reason=LedgerReason.LEDGER_UNUSABLE,
            ) from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # NOTE: check_same_thread=False because the ledger's lock, not the thread, serialises
        # access (tests drive one ledger from many threads). isolation_level=None: we issue
        # BEGIN/COMMIT ourselves so every write is exactly one transaction.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NOTE: NORMAL is crash-safe for a killed process in WAL mode (commits are in the WAL
        # in the OS page cache); only a power cut could lose the last commits, and leases are
        # seconds long anyway. FULL would add an fsync to every reservation.
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise LeaseError(
                ErrorKind.FAILED_PRECONDITION,
                f"{self.path} has lease schema version {version}, this Tendril knows {SCHEMA_VERSION}; "
                "move the file away to start with an empty ledger",
                reason=LedgerReason.LEDGER_SCHEMA,
            )
        self._db.execute(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def load(self) -> list[Lease]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM leases ORDER BY created_at, rowid").fetchall()
        return [_lease(row) for row in rows]

    def insert(self, lease: Lease) -> None:
        self._write(f"INSERT INTO leases ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", [_row(lease)])

    def update(self, lease: Lease) -> None:
        self._write(
            "UPDATE leases SET kind = ?, expires_at = ? WHERE lease_id = ?",
            [(lease.kind.value, lease.expires_at, lease.lease_id)],
        )

    def delete(self, lease_ids: list[str]) -> None:
        if lease_ids:
            self._write("DELETE FROM leases WHERE lease_id = ?", [(i,) for i in lease_ids])

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(sql, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
