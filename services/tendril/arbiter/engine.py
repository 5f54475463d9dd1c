"""The arbiter's decision loop: window -> filter -> rank -> reserve -> offer -> confirm/release.

No gRPC here: the LeaseService and the schedulers are reached through the two ports below
(:mod:`.clients` implements them over gRPC; unit tests use in-memory fakes).

Order of events for one winning request (DESIGN §3.1):

0. ask whether this worker can run jobs now (``JobsPort.cannot_run``: the JobService reports
   NOT_SERVING while its disk or its database fails its check); if not, every request of the
   window is dropped without an offer, so a broken worker stops winning work;
1. read the free resources once per window (``LeasePort.capacity``);
2. drop what cannot be answered, rank the rest by score;
3. for each, in score order: plan the offer, ``reserve`` a temporary lease — *before* the
   offer leaves the worker, so double booking is impossible — and subtract it from the
   window's free resources;
4. offer every reservation concurrently; ACCEPTED → ``confirm``; REJECTED, an error or no
   answer in time → ``release`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from tendril.arbiter.errors import ArbiterError, ArbiterReason
from tendril.arbiter.history import OfferHistory
from tendril.arbiter.model import OfferRecord, OfferState, Request
from tendril.arbiter.policy import Policy, rank, score
from tendril.arbiter.window import Windower
from tendril.core import liveness, metrics
from tendril.core.amounts import Amount
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger

log = get_logger("tendril.arbiter")

# NOTE: the offer's expiry (what the scheduler sees, and the call deadline) is set a little
# before the temporary lease's own expiry, so that an ACCEPTED arriving at the last moment
# still finds the lease alive when the arbiter confirms it.
CONFIRM_MARGIN_SECONDS = 0.1
CONFIRM_MARGIN_FRACTION = 0.2


class PortError(Exception):
    """A call to the LeaseService or a scheduler failed; the message says how."""


class NoRoom(PortError):
    """The LeaseService refused a reservation: it does not fit (any more)."""


class PortTimeout(PortError):
    """The callee did not answer in time."""


class LeaseGone(PortError):
    """The lease no longer exists: its owner released it (or it was withdrawn)."""


@dataclasses.dataclass(frozen=True)
class Grant:
    """A temporary lease the LeaseService granted."""

    lease_id: str
    expires_at: float  # wall-clock seconds


@dataclasses.dataclass(frozen=True)
class OfferSpec:
    """What the arbiter sends a scheduler."""

    offer_id: str
    request_id: str
    lease_id: str
    resources: Amount
    price: float
    expires_at: float
    worker_total: Amount


class LeasePort(Protocol):
    async def capacity(self) -> tuple[Amount, Amount]:
        """(total, free)."""
        ...

    async def reserve(self, *, owner_id: str, resources: Amount, price: float, request_id: str) -> Grant: ...

    async def confirm(self, lease_id: str) -> None: ...

    async def release(self, lease_id: str) -> None: ...


class JobsPort(Protocol):
    async def cannot_run(self) -> str:
        """Why this worker cannot run jobs now; "" when it can (or when that is not known)."""
        ...


class SchedulerPort(Protocol):
    async def offer(self, address: str, spec: OfferSpec, timeout: float) -> tuple[bool, str]:
        """(accepted, the scheduler's reason)."""
        ...


@dataclasses.dataclass
class _Item:
    request: Request
    source: str
    future: asyncio.Future[OfferRecord]


class Arbiter:
    """Decides requests in windows; :meth:`submit` returns a future of each request's outcome."""

    def __init__(
        self,
        policy: Policy,
        leases: LeasePort,
        schedulers: SchedulerPort,
        *,
        window_size: int,
        window_seconds: float,
        offer_timeout_seconds: float,
        history: OfferHistory | None = None,
        clock: Callable[[], float] = time.time,
        jobs: JobsPort | None = None,
    ) -> None:
        self.policy = policy
        self.leases = leases
        self.schedulers = schedulers
        self.jobs = jobs
        self.offer_timeout_seconds = offer_timeout_seconds
        self.history = history or OfferHistory()
        self._clock = clock
        self._window: Windower[_Item] = Windower(size=window_size, seconds=window_seconds)
        self._offers: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- input -------------------------------------------------------------------------------

    def submit(self, request: Request, source: str) -> asyncio.Future[OfferRecord]:
        """Queue a request for the next window; the future resolves with its final record."""
        if self._stopping:
            raise ArbiterError(
                ErrorKind.UNAVAILABLE,
                "the arbiter is stopping; try another worker",
                reason=ArbiterReason.ARBITER_STOPPING,
            )
        item = _Item(request, source, asyncio.get_running_loop().create_future())
        evicted = self._window.put(item)
        if evicted is not None:
            self._drop(evicted, "arbiter overloaded: too many requests waiting; the oldest was dropped")
        return item.future

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Decide windows until cancelled."""
        while True:
            liveness.beat()
            with liveness.idle():  # waiting for requests is not stalling
                items = await self._window.next()
            try:
                await self.decide(items)
            except Exception as exc:  # one broken window must not stop the arbiter
                log.error("arbiter.window_failed", exc_info=exc)
                for item in items:
                    if not item.future.done():
                        self._drop(item, f"internal error while deciding: {exc}")

    async def decide(self, items: list[_Item]) -> None:
        now = self._clock()
        if self.jobs is not None:
            with liveness.idle():  # a bounded call, like the LeaseService's below
                why = await self.jobs.cannot_run()
            if why:
                for item in items:
                    self._drop(item, f"this worker cannot run jobs now: {why}")
                return
        try:
            # NOTE: waits on the LeaseService count as idle: each is bounded by its deadline,
            # and a LeaseService that hangs is its own probe's business.
            with liveness.idle():
                total, free = await self.leases.capacity()
        except PortError as exc:
            for item in items:
                self._drop(item, f"lease service unavailable, free resources unknown: {exc}")
            return
        candidates: dict[int, _Item] = {}
        in_window: set[str] = set()
        for item in items:
            reason = self._duplicate(item.request, in_window) or self.policy.drop_reason(item.request, free, now)
            if reason is not None:
                self._drop(item, reason)
                continue
            in_window.add(item.request.request_id)
            candidates[id(item.request)] = item
        for request in rank(i.request for i in candidates.values()):
            item = candidates[id(request)]
            plan = self.policy.plan(request, free)
            if not request.resources.fits_in(free) or plan.resources == Amount():
                self._drop(
                    item, "does not fit the free resources: a higher-scored request of the same window took them"
                )
                continue
            record = self._record(request, OfferState.PENDING, resources=plan.resources, price=plan.price)
            record.offer_id = f"offer-{uuid.uuid4().hex[:16]}"
            try:
                with liveness.idle():
                    grant = await self.leases.reserve(
                        owner_id=request.scheduler_id,
                        resources=plan.resources,
                        price=plan.price,
                        request_id=request.request_id,
                    )
            except NoRoom as exc:
                self._drop(item, f"does not fit the free resources: {exc}")
                continue
            except PortError as exc:
                self.history.add(record)
                self._finish(item, record, OfferState.FAILED, f"could not reserve a lease: {exc}")
                continue
            free = (free - plan.resources).clamped()
            record.lease_id = grant.lease_id
            self.history.add(record)
            self.history.mark_seen(record)
            task = asyncio.create_task(self._offer(item, record, grant, total), name=f"offer-{request.request_id}")
            self._offers.add(task)
            task.add_done_callback(self._offers.discard)

    async def _offer(self, item: _Item, record: OfferRecord, grant: Grant, total: Amount) -> None:
        request = item.request
        ttl = max(grant.expires_at - record.created_at, 0.0)
        expires_at = min(
            grant.expires_at - min(CONFIRM_MARGIN_SECONDS, CONFIRM_MARGIN_FRACTION * ttl),
            record.created_at + self.offer_timeout_seconds,
        )
        spec = OfferSpec(
            offer_id=record.offer_id,
            request_id=request.request_id,
            lease_id=grant.lease_id,
            resources=record.resources,
            price=record.price,
            expires_at=expires_at,
            worker_total=total,
        )
        state, reason = OfferState.FAILED, ""
        timeout = max(expires_at - self._clock(), 0.001)
        try:
            accepted, answer = await self.schedulers.offer(request.scheduler_address, spec, timeout)
            if accepted:
                try:
                    await self.leases.confirm(grant.lease_id)
                    state, reason = OfferState.ACCEPTED, answer
                except LeaseGone:
                    # NOTE: the owner's first Renew confirms a lease too (lease.proto), so a
                    # scheduler may accept, use and release it before this Confirm arrives: the
                    # offer was accepted all the same, and there is nothing left to release.
                    state, reason = (
                        OfferState.ACCEPTED,
                        f"{answer} (released by its owner before the arbiter confirmed it)",
                    )
                except PortError as exc:
                    state, reason = OfferState.FAILED, f"accepted, but the lease could not be confirmed: {exc}"
            else:
                state, reason = OfferState.REJECTED, answer or "rejected by the scheduler"
        except PortTimeout:
            state, reason = OfferState.TIMED_OUT, f"no answer within {timeout:.3f} s (before the offer expired)"
        except PortError as exc:
            state, reason = OfferState.FAILED, f"offer call failed: {exc}"
        except asyncio.CancelledError:
            state, reason = OfferState.FAILED, "the arbiter stopped while the offer was out"
            raise
        finally:
            if state is not OfferState.ACCEPTED:
                await self._release(grant.lease_id)
            self._finish(item, record, state, reason)

    async def _release(self, lease_id: str) -> None:
        try:
            # NOTE: shielded so that a release started while stopping still reaches the
            # LeaseService; otherwise the reservation would linger until it expires.
            await asyncio.shield(self.leases.release(lease_id))
        except (PortError, asyncio.CancelledError) as exc:
            log.warning(
                "arbiter.release_failed", lease_id=lease_id, error=str(exc), hint="the lease expires on its own"
            )

    # -- stopping ----------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """No new requests; waiting ones are dropped; offers out get ``grace`` seconds to finish."""
        self._stopping = True
        for item in self._window.drain():
            self._drop(item, "the arbiter is stopping")
        if self._offers:
            _, pending = await asyncio.wait(set(self._offers), timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- records -----------------------------------------------------------------------------

    def _duplicate(self, request: Request, in_window: set[str]) -> str | None:
        """Why a request repeats one already offered on (dropped requests may be sent again)."""
        if not request.request_id:
            return None
        if request.request_id in in_window:
            return f"duplicate: request {request.request_id} came twice in one window; use a new request_id"
        earlier = self.history.seen(request.request_id)
        if earlier is None:
            return None
        return (
            f"duplicate: request {request.request_id} was already offered on ({earlier.state.value}); "
            "use a new request_id"
        )

    def _record(
        self, request: Request, state: OfferState, *, resources: Amount | None = None, price: float | None = None
    ) -> OfferRecord:
        return OfferRecord(
            request_id=request.request_id,
            scheduler_id=request.scheduler_id,
            resources=resources if resources is not None else request.resources,
            price=price if price is not None else request.bid,
            score=score(request),
            state=state,
            created_at=self._clock(),
        )

    def _drop(self, item: _Item, reason: str) -> None:
        record = self._record(item.request, OfferState.DROPPED)
        self.history.add(record)
        self._finish(item, record, OfferState.DROPPED, reason)

    def _finish(self, item: _Item, record: OfferRecord, state: OfferState, reason: str) -> None:
        record.state = state
        record.reason = reason
        record.decided_at = self._clock()
        metrics.count_offer(state.value, reason)
        # failures and timeouts are worth an operator's look; the rest is normal business
        log_fn = log.warning if state in (OfferState.FAILED, OfferState.TIMED_OUT) else log.info
        log_fn(
            "arbiter.decided",
            request_id=record.request_id,
            scheduler=record.scheduler_id,
            source=item.source,
            state=state.value,
            reason=reason,
            lease_id=record.lease_id or None,
            score=round(record.score, 4),
        )
        if not item.future.done():
            item.future.set_result(record)
