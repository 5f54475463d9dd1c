"""Registry core: records (kind, id) -> payload that vanish unless refreshed before their TTL.

No gRPC here; the clock is injectable so TTL behaviour is tested without waiting. Every
operation first expires what is due, so a reader never sees a record past its expiry; the
sweeper (:meth:`Registry.run_sweeper`) makes EXPIRED events reach watchers on time even when
nobody calls in.

Limits: a record is at most ``max_record_bytes`` (its serialized size, which the servicer
measures), and :meth:`Registry.page` answers at most :func:`max_page_size` records, so a page
of records at the cap always fits one gRPC message.

Ownership: a record put with a :class:`Caller` belongs to it. A caller with an identity (the
certificate name under mTLS) owns it by that name; one without gets a secret (256 random bits)
whose sha256 is kept in the entry, and must present the secret to put or delete the record
again. Both live in the entry (``owner``, ``secret_sha256``), so a store that keeps entries
keeps ownership. Once a record expired or was deleted anyone may create it anew.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import enum
import hashlib
import hmac
import json
import secrets
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
# A record's serialized size (kind, id, payload, ttl, owner) may not exceed this by default:
# a worker record is well under 1 KiB, and 64 KiB lets a page hold over a hundred records.
DEFAULT_MAX_RECORD_BYTES = 64 * 1024
DEFAULT_PAGE_SIZE = 100
# NOTE: what a listed record carries beyond what max_record_bytes counts: expires_at (≤ 13
# bytes), version (≤ 11), the repeated field's tag and length (≤ 6); rounded up generously.
RECORD_OVERHEAD_BYTES = 256
# room for the rest of a ListResponse (next_page_token ≤ ~700 bytes) and gRPC framing
PAGE_OVERHEAD_BYTES = 4096
SECRET_BYTES = 32  # 256 bits


def max_page_size(max_record_bytes: int, message_limit: int) -> int:
    """Most records in one List page so that a page of records at the cap fits ``message_limit``."""
    fits = (message_limit - PAGE_OVERHEAD_BYTES) // (max_record_bytes + RECORD_OVERHEAD_BYTES)
    if fits < 1:
        raise ValueError(
            f"max_record_bytes {max_record_bytes} leaves no room for one record in a {message_limit}-byte message"
        )
    return int(fits)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who puts or deletes: ``identity`` is the certificate name under mTLS ("" without);
    ``secret`` the record secret the request presents ("" when it has none)."""

    identity: str = ""
    secret: str = ""


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
    owner: str = ""  # the owner's certificate name (mTLS)
    secret_sha256: bytes = b""  # sha256 of the owner's secret (no mTLS)


@dataclasses.dataclass(frozen=True)
class Stored:
    """What a Put did: the entry, and the new secret when this Put created it for a caller without identity."""

    entry: Entry
    secret: str = ""


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


def check_put(kind: str, record_id: str, ttl_seconds: float, size: int, max_record_bytes: int) -> None:
    """What every backend checks before a Put: names, TTL range, and the size cap (``size`` serialized bytes)."""
    _check_name("kind", kind)
    _check_name("id", record_id)
    if not ttl_seconds > 0 or ttl_seconds > MAX_TTL_SECONDS:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            f"ttl_seconds is {ttl_seconds}; give a TTL in (0, {MAX_TTL_SECONDS:g}] seconds and refresh the "
            "record (Put again) before it runs out",
            reason=GatewayReason.TTL_INVALID,
        )
    if size > max_record_bytes:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            f"record {kind}/{record_id} is {size} bytes serialized; this gateway keeps records of at most "
            f"{max_record_bytes} bytes: put a reference (an address, a URI) instead of the content",
            reason=GatewayReason.RECORD_TOO_LARGE,
            metadata={"kind": kind, "id": record_id, "size": str(size), "limit": str(max_record_bytes)},
        )


def page_limit(page_size: int, default: int, maximum: int) -> int:
    """Records in one List page: ``page_size`` 0 (or less) means ``default``, more than ``maximum`` means it."""
    return default if page_size <= 0 else min(page_size, maximum)


def check_owner(entry: Entry, caller: Caller | None, what: str) -> None:
    """Raise PERMISSION_DENIED RECORD_NOT_OWNED unless ``caller`` owns ``entry`` (None: no check).

    Any store of entries calls this (and :func:`claim`), so ownership means the same in each.
    """
    if caller is None:
        return
    if entry.owner:
        if caller.identity == entry.owner:
            return
        hint = f"it belongs to certificate {entry.owner!r}"
    elif entry.secret_sha256:
        # NOTE: compare digests in constant time so response timing reveals nothing of the secret.
        if caller.secret and hmac.compare_digest(secret_hash(caller.secret), entry.secret_sha256):
            return
        hint = (
            "present the secret its first Put returned (PutResponse.secret)"
            if not caller.secret
            else "the secret presented is not this record's"
        )
    else:
        return
    raise GatewayError(
        ErrorKind.PERMISSION_DENIED,
        f"cannot {what} record {entry.kind}/{entry.id}: {hint}; only its owner may {what} it "
        "until it expires or is deleted (pick another id otherwise)",
        reason=GatewayReason.RECORD_NOT_OWNED,
        metadata={"kind": entry.kind, "id": entry.id},
    )


def claim(caller: Caller | None) -> tuple[str, bytes, str]:
    """Ownership of a record ``caller`` creates: (owner, secret_sha256, the new secret or "")."""
    if caller is None:
        return "", b"", ""
    if caller.identity:
        return caller.identity, b"", ""
    # NOTE: a new secret even when the request presents an old one (the record expired or the
    # gateway restarted): the gateway never adopts a secret a caller chose.
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return "", secret_hash(secret), secret


def next_entry(
    previous: Entry | None,
    caller: Caller | None,
    *,
    kind: str,
    record_id: str,
    payload: Any,
    ttl_seconds: float,
    now: float,
) -> tuple[Entry, str]:
    """The entry a Put makes over ``previous`` (the live record, or None) and the new secret ("" unless
    the Put created the record for a caller without a certificate); raises when ``caller`` does not
    own ``previous``. Both backends put through this, so ownership and versions follow one rule."""
    secret = ""
    if previous is not None:
        check_owner(previous, caller, "rewrite")
        owner, digest = previous.owner, previous.secret_sha256
    else:
        owner, digest, secret = claim(caller)
    entry = Entry(
        kind=kind,
        id=record_id,
        payload=payload,
        ttl_seconds=ttl_seconds,
        expires_at=now + ttl_seconds,
        version=previous.version + 1 if previous is not None else 1,
        owner=owner,
        secret_sha256=digest,
    )
    return entry, secret


def encode_token(kind: str, last: Entry) -> str:
    raw = json.dumps([kind, last.kind, last.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str) -> tuple[str, str]:
    """(kind, id) of the last record of the previous page; the token holds nothing else, so
    any gateway of the network continues a List another one began."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        listed, last_kind, last_id = json.loads(raw)
        if not all(isinstance(x, str) for x in (listed, last_kind, last_id)):
            raise ValueError("not three strings")
    except (ValueError, TypeError, binascii.Error):
        listed, last_kind, last_id = None, "", ""
    if listed != kind:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            "page_token is not a next_page_token given for this kind; start again with an empty page_token",
            reason=GatewayReason.PAGE_TOKEN_INVALID,
        )
    return last_kind, last_id


class Registry:
    """Live records with TTL, plus watchers that see EXISTING, PUT, DELETED and EXPIRED."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        watch_queue: int = DEFAULT_WATCH_QUEUE,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_page: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self._clock = clock
        self._watch_queue = watch_queue
        self.max_record_bytes = max_record_bytes
        self.max_page = max_page
        self.default_page = min(DEFAULT_PAGE_SIZE, max_page)
        self.writes = 0  # Puts and Deletes stored, for the bench and logs
        self._records: dict[tuple[str, str], Entry] = {}
        self._watchers: Fanout[RecordEvent] = Fanout()
        self._changed = asyncio.Event()  # set by put: the sweeper recomputes its next wake-up

    # -- operations --------------------------------------------------------------------------

    def put(self, kind: str, record_id: str, payload: Any, ttl_seconds: float) -> Entry:
        """Put a record with no owner (in-process use); see :meth:`put_as` for callers."""
        return self.put_as(kind, record_id, payload, ttl_seconds).entry

    def put_as(
        self,
        kind: str,
        record_id: str,
        payload: Any,
        ttl_seconds: float,
        *,
        caller: Caller | None = None,
        size: int = 0,
    ) -> Stored:
        """Create or refresh a record as ``caller`` (None: no ownership); ``size`` is its serialized size."""
        check_put(kind, record_id, ttl_seconds, size, self.max_record_bytes)
        self.expire_due()
        key = (kind, record_id)
        entry, secret = next_entry(
            self._records.get(key),
            caller,
            kind=kind,
            record_id=record_id,
            payload=payload,
            ttl_seconds=ttl_seconds,
            now=self._clock(),
        )
        self._records[key] = entry
        self.writes += 1
        self._emit(RecordEventType.PUT, entry)
        self._changed.set()
        return Stored(entry, secret)

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

    def page(self, kind: str = "", page_size: int = 0, page_token: str = "") -> tuple[list[Entry], str]:
        """One page of :meth:`records` and the token of the next ("" after the last page).

        ``page_size`` 0 means the default; larger than the maximum means the maximum. The token
        names the last record returned, so the next page starts right after it however the
        registry changed meanwhile.
        """
        size = page_limit(page_size, self.default_page, self.max_page)
        after = decode_token(kind, page_token) if page_token else None
        live = self.records(kind)
        if after is not None:
            live = [e for e in live if (e.kind, e.id) > after]
        page = live[:size]
        more = len(live) > size
        return page, encode_token(kind, page[-1]) if more else ""

    def delete(self, kind: str, record_id: str, *, caller: Caller | None = None) -> Entry:
        entry = self.get(kind, record_id)
        check_owner(entry, caller, "delete")
        del self._records[(kind, record_id)]
        self.writes += 1
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
