"""Registry core: records (kind, id) -> payload that vanish unless refreshed before their TTL.

No gRPC here; the clock is injectable so TTL behaviour is tested without waiting. Every
operation first expires what is due, so a reader never sees a record past its expiry; the
sweeper (:meth:`Registry.run_sweeper`) makes EXPIRED events reach watchers on time even when
nobody calls in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Any

from tendril.core import liveness
from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout
from tendril.core.logs import get_logger
from tendril.core.watch import Watch
from tendril.gateway.errors import GatewayError, GatewayReason

log = get_logger("tendril.gateway.registry")

MAX_TTL_SECONDS = 24 * 3600.0
MAX_NAME_LENGTH = 256
DEFAULT_WATCH_QUEUE = 1024
# NOTE: the sweeper wakes at the next expiry but at least this often, so a clock that jumps
# (tests, NTP) is noticed soon.
MAX_SWEEP_SLEEP = 1.0


class RecordEventType(enum.Enum):
    EXISTING = "existing"
    PUT = "put"
    DELETED = "deleted"
    EXPIRED = "expired"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One record as stored. ``payload`` is opaque to the registry."""

    kind: str
    id: str
    payload: Any
    ttl_seconds: float
    expires_at: float
    version: int


@dataclasses.dataclass(frozen=True)
class RecordEvent:
    type: RecordEventType
    entry: Entry


# field -> (reason when empty, reason when too long)
_NAME_REASONS = {
    "kind": (GatewayReason.KIND_MISSING, GatewayReason.KIND_TOO_LONG),
    "id": (GatewayReason.ID_MISSING, GatewayReason.ID_TOO_LONG),
}


def _check_name(field: str, value: str) -> None:
    missing, too_long = _NAME_REASONS[field]
    if not value:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            f"record {field} is empty; give a non-empty {field} (e.g. kind 'worker', id 'worker-a')",
            reason=missing,
        )
    if len(value) > MAX_NAME_LENGTH:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            f"record {field} is {len(value)} characters long; use at most {MAX_NAME_LENGTH}",
            reason=too_long,
        )


check_name = _check_name  # the same checks for every registry backend


class Registry:
    """Live records with TTL, plus watchers that see EXISTING, PUT, DELETED and EXPIRED."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        watch_queue: int = DEFAULT_WATCH_QUEUE,
    ) -> None:
        self._clock = clock
        self._watch_queue = watch_queue
        self._records: dict[tuple[str, str], Entry] = {}
        self._watchers: Fanout[RecordEvent] = Fanout()
        self._changed = asyncio.Event()  # set by put: the sweeper recomputes its next wake-up

    # -- operations --------------------------------------------------------------------------

    def put(self, kind: str, record_id: str, payload: Any, ttl_seconds: float) -> Entry:
        _check_name("kind", kind)
        _check_name("id", record_id)
        if not ttl_seconds > 0 or ttl_seconds > MAX_TTL_SECONDS:
            raise GatewayError(
                ErrorKind.INVALID_ARGUMENT,
                f"ttl_seconds is {ttl_seconds}; give a TTL in (0, {MAX_TTL_SECONDS:g}] seconds and refresh the "
                "record (Put again) before it runs out",
                reason=GatewayReason.TTL_INVALID,
            )
        self.expire_due()
        key = (kind, record_id)
        previous = self._records.get(key)
        entry = Entry(
            kind=kind,
            id=record_id,
            payload=payload,
            ttl_seconds=ttl_seconds,
            expires_at=self._clock() + ttl_seconds,
            version=(previous.version + 1) if previous else 1,
        )
        self._records[key] = entry
        self._emit(RecordEventType.PUT, entry)
        self._changed.set()
        return entry

    def get(self, kind: str, record_id: str) -> Entry:
        _check_name("kind", kind)
        _check_name("id", record_id)
        self.expire_due()
        entry = self._records.get((kind, record_id))
        if entry is None:
            raise GatewayError(
                ErrorKind.NOT_FOUND,
                f"no live record {kind}/{record_id}: it was never put, was deleted, or its TTL ran out "
                "(List shows the live records)",
                reason=GatewayReason.RECORD_NOT_FOUND,
                metadata={"kind": kind, "id": record_id},
            )
        return entry

    def records(self, kind: str = "") -> list[Entry]:
        """Live records of ``kind`` (all kinds when empty), sorted by kind then id."""
        self.expire_due()
        return sorted(
            (e for e in self._records.values() if not kind or e.kind == kind),
            key=lambda e: (e.kind, e.id),
        )

    def delete(self, kind: str, record_id: str) -> Entry:
        entry = self.get(kind, record_id)
        del self._records[(kind, record_id)]
        self._emit(RecordEventType.DELETED, entry)
        return entry

    def watch(self, kind: str = "", name: str = "") -> Watch[RecordEvent]:
        """EXISTING for every live record (of ``kind`` when given), then every change.

        A watcher that falls behind is cut off (ABORTED WATCH_OVERFLOW) and must watch again
        (it then gets a fresh snapshot), so it never holds a silently wrong picture.
        """
        return Watch(
            self._watchers,
            lambda: [RecordEvent(RecordEventType.EXISTING, entry) for entry in self.records(kind)],
            queue=self._watch_queue,
            overflow=lambda exc: GatewayError(
                ErrorKind.ABORTED,
                f"{exc}; start a new Watch (it begins with EXISTING for every live record)",
                reason=GatewayReason.WATCH_OVERFLOW,
            ),
            name=name,
            accepts=(lambda ev: ev.entry.kind == kind) if kind else None,
        )

    # -- expiry ------------------------------------------------------------------------------

    def expire_due(self) -> list[Entry]:
        """Remove every record whose TTL ran out; each emits EXPIRED."""
        now = self._clock()
        due = [e for e in self._records.values() if e.expires_at <= now]
        for entry in sorted(due, key=lambda e: e.expires_at):
            del self._records[(entry.kind, entry.id)]
            log.info("registry.expired", kind=entry.kind, id=entry.id, ttl_seconds=entry.ttl_seconds)
            self._emit(RecordEventType.EXPIRED, entry)
        return due

    def next_expiry(self) -> float | None:
        return min((e.expires_at for e in self._records.values()), default=None)

    async def run_sweeper(self) -> None:
        """Expire records on time, forever (cancel to stop). Needs a running event loop."""
        while True:
            liveness.beat()
            self.expire_due()
            nxt = self.next_expiry()
            sleep = MAX_SWEEP_SLEEP if nxt is None else min(max(nxt - self._clock(), 0.0), MAX_SWEEP_SLEEP)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=sleep)

    def close(self) -> None:
        self._watchers.close_all()

    def _emit(self, kind: RecordEventType, entry: Entry) -> None:
        self._watchers.publish(RecordEvent(kind, entry))
