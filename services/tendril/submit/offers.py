"""Choosing among offers (no gRPC): the offers that answer one request are gathered for a short
window after the first arrives, then the best is taken and the others rejected.

"Best": a worker the submission has not lost before, then the lowest price asked, then the
latest expiry (the most time to confirm), then the worker id (a stable order).

NOTE: the arbiter holds a temporary lease only ``lease.temporary_seconds`` (0.5 s by default)
and waits for the answer at most ``arbiter.offer_timeout_seconds`` (0.5 s): the window ends
well before the earliest offer's expiry, and the Offer calls are answered then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable

from tendril.scheduler.allocation import OfferIn

# An offer is answered at least this long before it expires.
EXPIRY_MARGIN_SECONDS = 0.15


def rank(offer: OfferIn, avoid: Iterable[str]) -> tuple[bool, float, float, str]:
    """Sort key of an offer: the smallest is the best."""
    return (offer.worker_id in set(avoid), offer.price, -offer.expires_at, offer.worker_id)


def choose(offers: list[OfferIn], avoid: Iterable[str] = ()) -> OfferIn | None:
    """The best offer, or None when there is none."""
    avoid = set(avoid)
    return min(offers, key=lambda o: rank(o, avoid)) if offers else None


@dataclasses.dataclass
class _Round:
    offers: list[OfferIn] = dataclasses.field(default_factory=list)
    decided: asyncio.Future[OfferIn | None] | None = None
    timer: asyncio.TimerHandle | None = None


class OfferBox:
    """The offers of the requests a submission published; :meth:`consider` is what the
    AllocationService's Offer calls, :meth:`taken` what the submission waits on."""

    def __init__(
        self, *, window: float, avoid: Callable[[], Iterable[str]] = tuple, clock: Callable[[], float] = time.time
    ) -> None:
        self.window = window
        self.avoid = avoid
        self.clock = clock
        self._rounds: dict[str, _Round] = {}
        self._taken: asyncio.Queue[tuple[OfferIn, int]] = asyncio.Queue()

    def open(self, request_id: str) -> None:
        """Offers for ``request_id`` are welcome from now on."""
        self._rounds[request_id] = _Round()

    def has(self, request_id: str) -> bool:
        """Whether ``request_id`` is one of this box's open requests."""
        return request_id in self._rounds

    def close_all(self) -> None:
        """No more offers are welcome (late ones are rejected)."""
        for request_id in list(self._rounds):
            self._decide(request_id, take=False)
        self._rounds.clear()

    def _decide(self, request_id: str, *, take: bool = True) -> None:
        round_ = self._rounds.get(request_id)
        if round_ is None or round_.decided is None or round_.decided.done():
            return
        avoid = set(self.avoid())
        candidates = [o for o in round_.offers if o.worker_id not in avoid]
        best = choose(candidates) if take else None
        round_.decided.set_result(best)
        if best is not None:
            self._taken.put_nowait((best, len(round_.offers)))

    async def consider(self, offer: OfferIn) -> tuple[bool, str]:
        """(accepted, reason) for one offer; waits until its request's window ends."""
        round_ = self._rounds.get(offer.request_id)
        if round_ is None:
            return False, f"request {offer.request_id!r} is not open (not ours, or an offer was taken already)"
        if offer.worker_id in set(self.avoid()):
            return False, f"worker {offer.worker_id} lost this job before; it runs elsewhere"
        round_.offers.append(offer)
        loop = asyncio.get_running_loop()
        if round_.decided is None:
            round_.decided = loop.create_future()
            wait = self.window
            if offer.expires_at:
                wait = min(wait, max(0.0, offer.expires_at - self.clock() - EXPIRY_MARGIN_SECONDS))
            round_.timer = loop.call_later(wait, self._decide, offer.request_id)
        elif offer.expires_at and round_.timer is not None:
            # NOTE: an offer that expires sooner than the window's end shortens the window.
            left = offer.expires_at - self.clock() - EXPIRY_MARGIN_SECONDS
            if loop.time() + left < round_.timer.when():
                round_.timer.cancel()
                round_.timer = loop.call_later(max(0.0, left), self._decide, offer.request_id)
        best = await asyncio.shield(round_.decided)
        if best is offer:
            self._rounds.pop(offer.request_id, None)
            return True, "the best offer"
        if best is None:
            return False, "the submission no longer needs a worker"
        return False, f"took a better offer ({best.worker_id})"

    def drain(self) -> list[OfferIn]:
        """Offers taken but not used (their leases are to be released)."""
        left = []
        while not self._taken.empty():
            left.append(self._taken.get_nowait()[0])
        return left

    async def taken(self) -> tuple[OfferIn, int]:
        """The next offer taken (and how many offers its window saw)."""
        return await self._taken.get()
