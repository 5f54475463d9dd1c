"""Requests and offer records as plain data (no gRPC)."""

from __future__ import annotations

import dataclasses
import enum

from tendril.core.amounts import Amount


@dataclasses.dataclass(frozen=True)
class Request:
    """One resource request of a scheduler (from the bus or a direct Solicit)."""

    request_id: str
    scheduler_id: str
    scheduler_address: str
    resources: Amount
    executors: tuple[tuple[str, str], ...]  # (class, name)
    bid: float
    deadline: float | None  # wall-clock seconds; None when the request has none


class OfferState(enum.Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    DROPPED = "dropped"


@dataclasses.dataclass
class OfferRecord:
    """What became of one request at this worker (updated in place while the offer is out)."""

    request_id: str
    scheduler_id: str
    resources: Amount
    price: float
    score: float
    state: OfferState
    created_at: float
    reason: str = ""
    offer_id: str = ""
    lease_id: str = ""
    decided_at: float | None = None

    @property
    def final(self) -> bool:
        return self.state is not OfferState.PENDING
