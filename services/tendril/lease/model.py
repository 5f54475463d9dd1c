"""Leases and lease events as plain data (no gRPC, no SQL)."""

from __future__ import annotations

import dataclasses
import enum

from tendril.core.amounts import Amount


class LeaseKind(enum.Enum):
    TEMPORARY = "temporary"  # held while an offer is out
    RENEWABLE = "renewable"  # accepted; lives while its owner renews it


class LeaseEventType(enum.Enum):
    EXISTING = "existing"
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RENEWED = "renewed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclasses.dataclass(frozen=True)
class Lease:
    """One reservation. Times are wall-clock seconds since the epoch (they survive restarts)."""

    lease_id: str
    owner_id: str
    kind: LeaseKind
    resources: Amount
    price: float
    request_id: str
    created_at: float
    expires_at: float

    def live(self, now: float) -> bool:
        return self.expires_at > now


@dataclasses.dataclass(frozen=True)
class LeaseEvent:
    type: LeaseEventType
    lease: Lease
