"""The lease ledger: the rules of reserving, confirming, renewing, releasing and expiring.

A lease is reserved TEMPORARY (an offer is out) and turns RENEWABLE when its offer is
accepted: by the owner's first Renew or by the arbiter's Confirm, whichever lands first (the
other then changes nothing). A released or expired lease is gone for good.

No gRPC here. One lock guards the in-memory view of the live leases *and* the SQLite write
of every change, and the fit check happens under that same lock: two reservations can never
both see the same free resources, so double booking is impossible. A change is applied in
memory only after its SQLite transaction committed, so a failed write leaves nothing behind.

Every operation first expires what is due, so nothing ever sees (or is blocked by) a lease
past its expiry; the service's pruner does the same on a timer so EXPIRED events go out on
time.

Restart: :class:`Ledger` loads the table at start, drops what expired while the service was
down (logged) and keeps every unexpired lease as it was.

Thread note: operations may run on any thread; watch subscriptions are asyncio objects, so
when watchers exist, operations must run on the event loop's thread (the service does).
"""

from __future__ import annotations

import collections
import math
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tendril.core import metrics
from tendril.core.amounts import Amount
from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout
from tendril.core.logs import get_logger
from tendril.core.watch import Watch
from tendril.lease.errors import LeaseError, LeaseReason
from tendril.lease.model import Lease, LeaseEvent, LeaseEventType, LeaseKind
from tendril.lease.store import LeaseStore

log = get_logger("tendril.leases")

DEFAULT_WATCH_QUEUE = 1024
# Leases that ended recently, remembered so Renew/Get can say "expired" or "released"
# instead of a bare "not found".
ENDED_MEMORY = 4096
MAX_ID_LENGTH = 256


# field -> (reason when empty, reason when too long)
_ID_REASONS = {
    "lease_id": (LeaseReason.LEASE_ID_MISSING, LeaseReason.LEASE_ID_TOO_LONG),
    "owner_id": (LeaseReason.OWNER_ID_MISSING, LeaseReason.OWNER_ID_TOO_LONG),
}


def _require(field: str, value: str) -> None:
    missing, too_long = _ID_REASONS[field]
    if not value:
        raise LeaseError(ErrorKind.INVALID_ARGUMENT, f"{field} is empty; give the {field}", reason=missing)
    _check_length(field, value, too_long)


def _check_length(field: str, value: str, reason: LeaseReason) -> None:
    if len(value) > MAX_ID_LENGTH:
        raise LeaseError(
            ErrorKind.INVALID_ARGUMENT,
            f"{field} is {len(value)} characters long; use at most {MAX_ID_LENGTH}",
            reason=reason,
        )


def _require_caller(caller: str) -> None:
    if not caller:
        raise LeaseError(
            ErrorKind.UNAUTHENTICATED,
            "the call does not say who is calling; send metadata 'tendril-peer-id' with your peer id "
            "(open_channel(address, peer_id=...) does it)",
            reason=LeaseReason.CALLER_UNKNOWN,
        )


class Ledger:
    """Live leases of one worker, persisted in SQLite at ``path``."""

    def __init__(
        self,
        path: str | Path,
        *,
        total: Amount,
        worker_id: str,
        temporary_seconds: float,
        renewable_seconds: float,
        clock: Callable[[], float] = time.time,
        watch_queue: int = DEFAULT_WATCH_QUEUE,
    ) -> None:
        if total.is_negative():
            raise ValueError(f"total resources must not be negative: {total}")
        self.total = total
        self.worker_id = worker_id
        self.temporary_seconds = temporary_seconds
        self.renewable_seconds = renewable_seconds
        self._clock = clock
        self._watch_queue = watch_queue
        self._lock = threading.RLock()
        self._store = LeaseStore(path)
        self._live: dict[str, Lease] = {}
        self._ended: collections.OrderedDict[str, tuple[Lease, LeaseEventType, float]] = collections.OrderedDict()
        self._watchers: Fanout[LeaseEvent] = Fanout()
        self._reconcile()

    # -- start-up ----------------------------------------------------------------------------

    def _reconcile(self) -> None:
        now = self._clock()
        loaded = self._store.load()
        expired = [lease for lease in loaded if not lease.live(now)]
        self._store.delete([lease.lease_id for lease in expired])
        for lease in expired:
            self._remember(lease, LeaseEventType.EXPIRED, lease.expires_at)
        self._live = {lease.lease_id: lease for lease in loaded if lease.live(now)}
        metrics.set_leases_active(lease.kind.value for lease in self._live.values())
        if loaded:
            log.info(
                "leases.reconciled",
                kept=len(self._live),
                expired_while_down=[lease.lease_id for lease in expired],
            )
        reserved = self._reserved()
        if not reserved.fits_in(self.total):
            log.warning(
                "leases.over_capacity",
                total=str(self.total),
                reserved=str(reserved),
                hint="the configured resources shrank below what live leases hold; nothing new fits until they end",
            )

    # -- queries -----------------------------------------------------------------------------

    def get(self, lease_id: str) -> Lease:
        _require("lease_id", lease_id)
        with self._lock:
            self._prune_locked()
            lease = self._live.get(lease_id)
            if lease is None:
                raise self._not_found(lease_id)
            return lease

    def leases(self, owner_id: str = "") -> list[Lease]:
        """Live leases (of ``owner_id`` when given), oldest first."""
        with self._lock:
            self._prune_locked()
            leases = [lease for lease in self._live.values() if not owner_id or lease.owner_id == owner_id]
        return sorted(leases, key=lambda lease: lease.created_at)  # stable: ties keep reservation order

    def capacity(self) -> tuple[Amount, Amount, Amount]:
        """(total, reserved, free) right now; free never goes below zero."""
        with self._lock:
            self._prune_locked()
            reserved = self._reserved()
        return self.total, reserved, (self.total - reserved).clamped()

    # -- changes -----------------------------------------------------------------------------

    def _require_worker(self, caller: str, action: str) -> None:
        """Only the worker itself (its arbiter) may ``action``: UNAUTHENTICATED / PERMISSION_DENIED."""
        _require_caller(caller)
        if caller != self.worker_id:
            raise LeaseError(
                ErrorKind.PERMISSION_DENIED,
                f"only the worker itself (peer id {self.worker_id!r}) may {action}",
                reason=LeaseReason.NOT_THE_WORKER,
                metadata={"caller": caller},
            )

    def reserve(
        self,
        caller: str,
        *,
        owner_id: str,
        resources: Amount,
        price: float,
        request_id: str = "",
        ttl_seconds: float = 0.0,
    ) -> Lease:
        """A temporary lease for ``owner_id``; only the worker itself (its arbiter) may reserve."""
        self._require_worker(
            caller, f"reserve; {caller!r} may not. Schedulers get leases by accepting the arbiter's offers."
        )
        _require("owner_id", owner_id)
        _check_length("request_id", request_id, LeaseReason.REQUEST_ID_TOO_LONG)
        if resources.is_negative() or not all(
            math.isfinite(v) for v in (resources.cpu, resources.memory_gib, resources.storage_gib)
        ):
            raise LeaseError(
                ErrorKind.INVALID_ARGUMENT,
                f"resources must be finite and not negative (got {resources})",
                reason=LeaseReason.RESOURCES_INVALID,
            )
        if resources == Amount():
            raise LeaseError(
                ErrorKind.INVALID_ARGUMENT,
                "resources are all zero; reserve at least some cpu, memory, storage or gpu",
                reason=LeaseReason.RESOURCES_EMPTY,
            )
        if not (math.isfinite(price) and price >= 0):
            raise LeaseError(
                ErrorKind.INVALID_ARGUMENT,
                f"price must be a finite number >= 0 (got {price})",
                reason=LeaseReason.PRICE_INVALID,
            )
        if not (math.isfinite(ttl_seconds) and 0 <= ttl_seconds <= self.renewable_seconds):
            raise LeaseError(
                ErrorKind.INVALID_ARGUMENT,
                f"ttl_seconds must be between 0 (the default {self.temporary_seconds:g} s) and the renewable "
                f"lease time {self.renewable_seconds:g} s (got {ttl_seconds})",
                reason=LeaseReason.TTL_INVALID,
            )
        ttl = ttl_seconds or self.temporary_seconds
        with self._lock:
            now = self._prune_locked()
            free = (self.total - self._reserved()).clamped()
            if not resources.fits_in(free):
                raise LeaseError(
                    ErrorKind.RESOURCE_EXHAUSTED,
                    f"does not fit: {'; '.join(resources.shortfall(free))}. Wait for leases to end or ask for less "
                    "(GetCapacity shows what is free).",
                    reason=LeaseReason.DOES_NOT_FIT,
                    metadata={"free": str(free)},
                )
            lease = Lease(
                lease_id=f"lease-{uuid.uuid4().hex}",
                owner_id=owner_id,
                kind=LeaseKind.TEMPORARY,
                resources=resources,
                price=price,
                request_id=request_id,
                created_at=now,
                expires_at=now + ttl,
            )
            self._store.insert(lease)
            self._live[lease.lease_id] = lease
            self._emit(LeaseEventType.RESERVED, lease)
        log.info("lease.reserved", lease_id=lease.lease_id, owner=owner_id, resources=str(resources), ttl_seconds=ttl)
        return lease

    def confirm(self, caller: str, lease_id: str) -> Lease:
        """Temporary -> renewable (its offer was accepted); only the worker itself may confirm.

        Idempotent: a lease that is already renewable (its owner's first :meth:`renew` confirmed
        it) is returned as it is, expiry unchanged.
        """
        self._require_worker(
            caller,
            "confirm a lease; the arbiter does it when the owner accepts the offer (the owner's first Renew "
            "confirms it too)",
        )
        _require("lease_id", lease_id)
        with self._lock:
            now = self._prune_locked()
            lease = self._live.get(lease_id)
            if lease is None:
                raise self._gone(lease_id, action="confirm")
            if lease.kind is LeaseKind.RENEWABLE:
                # NOTE: the scheduler renews as soon as it answers ACCEPTED, so its first Renew
                # often lands before the arbiter hears the answer: both mean the same acceptance.
                log.debug("lease.already_confirmed", lease_id=lease_id, owner=lease.owner_id)
                return lease
            lease = self._confirm_locked(lease, now)
        log.info("lease.confirmed", lease_id=lease_id, owner=lease.owner_id, by="worker")
        return lease

    def renew(self, caller: str, lease_id: str) -> Lease:
        """Owner only: expiry = now + renewable_seconds (never further).

        The owner's first renewal of a temporary lease is its acceptance: the lease turns
        renewable (CONFIRMED), whether or not the arbiter's :meth:`confirm` came first. A lease
        the arbiter released (offer rejected or timed out) or that expired is not live, so it
        can never come back this way.
        """
        _require_caller(caller)
        _require("lease_id", lease_id)
        with self._lock:
            now = self._prune_locked()
            lease = self._live.get(lease_id)
            if lease is None:
                raise self._gone(lease_id, action="renew", caller=caller)
            self._check_owner(lease, caller, action="renew")
            confirming = lease.kind is LeaseKind.TEMPORARY
            if confirming:
                lease = self._confirm_locked(lease, now)
            else:
                lease = self._change(lease, kind=lease.kind, expires_at=now + self.renewable_seconds)
                self._emit(LeaseEventType.RENEWED, lease)
        if confirming:
            log.info("lease.confirmed", lease_id=lease_id, owner=lease.owner_id, by="owner")
        else:
            log.debug("lease.renewed", lease_id=lease_id, owner=lease.owner_id, expires_at=lease.expires_at)
        return lease

    def release(self, caller: str, lease_id: str) -> Lease:
        """Free a lease at once: its owner, or the worker itself (its arbiter), may."""
        _require_caller(caller)
        _require("lease_id", lease_id)
        with self._lock:
            now = self._prune_locked()
            lease = self._live.get(lease_id)
            if lease is None:
                raise self._not_found(lease_id)
            if caller != self.worker_id:
                self._check_owner(lease, caller, action="release")
            self._store.delete([lease_id])
            del self._live[lease_id]
            self._remember(lease, LeaseEventType.RELEASED, now)
            self._emit(LeaseEventType.RELEASED, lease)
        log.info("lease.released", lease_id=lease_id, owner=lease.owner_id, by=caller)
        return lease

    def prune(self) -> list[Lease]:
        """Remove every expired lease (each emits EXPIRED); returns them."""
        with self._lock:
            return self._expire_locked(self._clock())

    # -- watching ----------------------------------------------------------------------------

    def watch(self, owner_id: str = "", name: str = "") -> Watch[LeaseEvent]:
        """EXISTING for every live lease (of ``owner_id`` when given), then every change.

        A watcher that falls behind is cut off (ABORTED WATCH_OVERFLOW) and must watch again.
        """
        with self._lock:
            return Watch(
                self._watchers,
                lambda: [LeaseEvent(LeaseEventType.EXISTING, lease) for lease in self.leases(owner_id)],
                queue=self._watch_queue,
                overflow=lambda exc: LeaseError(
                    ErrorKind.ABORTED,
                    f"{exc}; open a new Watch (it starts with EXISTING for every live lease)",
                    reason=LeaseReason.WATCH_OVERFLOW,
                ),
                name=name,
                accepts=(lambda ev: ev.lease.owner_id == owner_id) if owner_id else None,
            )

    def end_watches(self) -> None:
        """Finish every watch stream (before a graceful stop)."""
        self._watchers.close_all()

    def close(self) -> None:
        self.end_watches()
        with self._lock:
            self._store.close()

    # -- internals (call with the lock held) -------------------------------------------------

    def _reserved(self) -> Amount:
        total = Amount()
        for lease in self._live.values():
            total = total + lease.resources
        return total

    def _prune_locked(self) -> float:
        """Expire what is due; returns the "now" it used."""
        now = self._clock()
        self._expire_locked(now)
        return now

    def _expire_locked(self, now: float) -> list[Lease]:
        due = sorted((lease for lease in self._live.values() if not lease.live(now)), key=lambda x: x.expires_at)
        if due:
            self._store.delete([lease.lease_id for lease in due])
            for lease in due:
                del self._live[lease.lease_id]
                self._remember(lease, LeaseEventType.EXPIRED, lease.expires_at)
                self._emit(LeaseEventType.EXPIRED, lease)
                log.info("lease.expired", lease_id=lease.lease_id, owner=lease.owner_id, kind=lease.kind.value)
        return due

    def _confirm_locked(self, lease: Lease, now: float) -> Lease:
        lease = self._change(lease, kind=LeaseKind.RENEWABLE, expires_at=now + self.renewable_seconds)
        self._emit(LeaseEventType.CONFIRMED, lease)
        return lease

    def _change(self, lease: Lease, *, kind: LeaseKind, expires_at: float) -> Lease:
        updated = Lease(
            lease_id=lease.lease_id,
            owner_id=lease.owner_id,
            kind=kind,
            resources=lease.resources,
            price=lease.price,
            request_id=lease.request_id,
            created_at=lease.created_at,
            expires_at=expires_at,
        )
        self._store.update(updated)
        self._live[lease.lease_id] = updated
        return updated

    def _check_owner(self, lease: Lease, caller: str, *, action: str) -> None:
        if lease.owner_id != caller:
            raise LeaseError(
                ErrorKind.PERMISSION_DENIED,
                f"lease {lease.lease_id} belongs to {lease.owner_id!r}; only its owner may {action} it "
                f"(you called as {caller!r}: check your tendril-peer-id)",
                reason=LeaseReason.NOT_THE_OWNER,
                metadata={"lease_id": lease.lease_id, "caller": caller},
            )

    def _remember(self, lease: Lease, how: LeaseEventType, at: float) -> None:
        self._ended[lease.lease_id] = (lease, how, at)
        self._ended.move_to_end(lease.lease_id)
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)

    def _not_found(self, lease_id: str) -> LeaseError:
        ended = self._ended.get(lease_id)
        if ended is None:
            detail = "this worker has no such lease"
        else:
            _, how, at = ended
            detail = f"it {how.value} at {time.strftime('%H:%M:%S', time.gmtime(at))}Z"
        return LeaseError(
            ErrorKind.NOT_FOUND,
            f"lease {lease_id} is not live: {detail}. List shows the live leases; a new lease needs a new offer.",
            reason=LeaseReason.LEASE_NOT_FOUND,
            metadata={"lease_id": lease_id},
        )

    def _gone(self, lease_id: str, *, action: str, caller: str = "") -> LeaseError:
        """The error for renewing/confirming a lease that is not live."""
        ended = self._ended.get(lease_id)
        if ended is not None and ended[1] is LeaseEventType.EXPIRED:
            lease = ended[0]
            if caller:
                self._check_owner(lease, caller, action=action)
            return LeaseError(
                ErrorKind.FAILED_PRECONDITION,
                f"lease {lease_id} expired at {time.strftime('%H:%M:%S', time.gmtime(ended[2]))}Z and cannot be "
                f"{action}ed; renew leases before they run out (at 2/3 of their time) and ask for a new offer now",
                reason=LeaseReason.LEASE_EXPIRED,
                metadata={"lease_id": lease_id},
            )
        return self._not_found(lease_id)

    def _emit(self, kind: LeaseEventType, lease: Lease) -> None:
        metrics.set_leases_active(live.kind.value for live in self._live.values())  # every change passes here
        self._watchers.publish(LeaseEvent(kind, lease))
