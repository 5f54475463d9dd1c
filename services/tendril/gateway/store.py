"""Where a gateway keeps its state: the seam between the gRPC servicers and a backend.

Two concerns, one ABC each (the servicers see nothing else):

* :class:`BusStore` — publish / subscribe on topics;
* :class:`RegistryStore` — records with TTL: put / get / list / delete / watch, with versions
  and EXPIRED events.

``gateway.backend`` picks the implementation: ``memory`` (:mod:`tendril.gateway.memory`, the
in-process cores :class:`~tendril.gateway.bus.TopicBus` and
:class:`~tendril.gateway.registry.Registry`; one gateway is the whole network) or ``redis``
(:mod:`tendril.gateway.redis_store`; the gateway holds no state of its own, so several
gateways over one Redis serve one network). Both pass the same tests
(tests/unit/test_gateway_core.py runs them against each).

A backend that cannot reach its storage raises :class:`~tendril.gateway.errors.GatewayError`
UNAVAILABLE ``BACKEND_UNAVAILABLE``, and ends open subscriptions and watches with it
(:class:`BackendLost`), so that clients move to another gateway or retry.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

from tendril.core.fanout import Subscription, SubscriptionOverflow
from tendril.core.timeutil import from_timestamp, to_timestamp
from tendril.core.watch import Watch
from tendril.gateway.errors import GatewayError
from tendril.gateway.registry import Caller, Entry, RecordEvent, Stored
from tendril_proto.gateway.v1 import gateway_pb2


class BackendLost(SubscriptionOverflow):
    """A subscription or watch ended because the backend went away; ``error`` says so.

    NOTE: a SubscriptionOverflow, so that it is raised out of an iteration rather than ending
    it quietly (a quiet end would look like a graceful gateway stop): :class:`Watch` maps it
    through its ``overflow`` callable and :func:`messages` re-raises ``error``.
    """

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


async def messages(sub: Subscription[gateway_pb2.Envelope]) -> AsyncIterator[gateway_pb2.Envelope]:
    """Every message of a bus subscription until it ends; raises the backend's error if it was lost."""
    try:
        async for envelope in sub:
            yield envelope
    except BackendLost as exc:
        raise exc.error from None


def record_to_proto(entry: Entry, *, with_secret_hash: bool = False) -> gateway_pb2.Record:
    """The wire form of a registry entry; ``with_secret_hash`` for a store that keeps whole
    records (Redis), never for callers."""
    return gateway_pb2.Record(
        kind=entry.kind,
        id=entry.id,
        payload=entry.payload,
        ttl_seconds=entry.ttl_seconds,
        expires_at=to_timestamp(entry.expires_at),
        version=entry.version,
        owner=entry.owner,
        owner_secret_sha256=entry.secret_sha256 if with_secret_hash else b"",
    )


def record_from_proto(record: gateway_pb2.Record) -> Entry:
    """Inverse of :func:`record_to_proto` (a payload-less record gives payload None)."""
    return Entry(
        kind=record.kind,
        id=record.id,
        payload=record.payload if record.HasField("payload") else None,
        ttl_seconds=record.ttl_seconds,
        expires_at=from_timestamp(record.expires_at),
        version=record.version,
        owner=record.owner,
        secret_sha256=record.owner_secret_sha256,
    )


class BusStore(abc.ABC):
    """Topics -> subscribers; every subscriber of a topic gets each message published on it."""

    @abc.abstractmethod
    async def publish(self, topic: str, envelope: gateway_pb2.Envelope) -> int:
        """Hand ``envelope`` to every subscriber of ``topic``; returns how many it was queued for."""

    @abc.abstractmethod
    async def subscribe(self, topic: str, subscriber: str = "") -> Subscription[gateway_pb2.Envelope]:
        """A bounded subscription; once this returns, every later publish (any gateway) reaches it."""

    @abc.abstractmethod
    def unsubscribe(self, topic: str, sub: Subscription[gateway_pb2.Envelope]) -> None:
        """End ``sub`` (idempotent)."""

    @abc.abstractmethod
    def subscribers(self, topic: str) -> int:
        """Subscribers of ``topic`` on this gateway."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (and start background tasks) before the first call."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End every subscription (their streams finish) and release connections."""

    @property
    @abc.abstractmethod
    def published(self) -> int:
        """Messages published through this gateway."""

    @property
    @abc.abstractmethod
    def dropped(self) -> int:
        """Messages dropped from this gateway's slow subscribers' queues."""


class RegistryStore(abc.ABC):
    """Records (kind, id) -> payload with TTL and versions, and watches of their changes.

    Semantics every backend keeps: a Put of a live record increments its version, a Put after
    expiry or delete starts again at 1; a reader never sees a record past its expiry; List is
    sorted by (kind, id) and paged with the tokens of :func:`~tendril.gateway.registry.encode_token`
    (at most ``max_page`` records a page); a Watch gets EXISTING for every live record, then PUT,
    DELETED and EXPIRED in the order they happened, and is cut off (ABORTED WATCH_OVERFLOW) when
    it falls behind. Limits and ownership are the registry module's own functions
    (:func:`~tendril.gateway.registry.check_put`, :func:`~tendril.gateway.registry.check_owner`,
    :func:`~tendril.gateway.registry.claim`), applied atomically with the write.
    """

    max_record_bytes: int
    max_page: int

    @property
    @abc.abstractmethod
    def writes(self) -> int:
        """Puts and Deletes stored through this gateway."""

    async def put(self, kind: str, record_id: str, payload: object, ttl_seconds: float) -> Entry:
        """Put a record with no owner (in-process use)."""
        return (await self.put_as(kind, record_id, payload, ttl_seconds)).entry

    @abc.abstractmethod
    async def put_as(
        self,
        kind: str,
        record_id: str,
        payload: object,
        ttl_seconds: float,
        *,
        caller: Caller | None = None,
        size: int = 0,
    ) -> Stored:
        """Create or refresh a record as ``caller`` (None: no ownership check); ``size`` is its serialized size."""

    @abc.abstractmethod
    async def get(self, kind: str, record_id: str) -> Entry: ...

    @abc.abstractmethod
    async def records(self, kind: str = "") -> list[Entry]:
        """Live records of ``kind`` (all kinds when empty), sorted by kind then id."""

    @abc.abstractmethod
    async def page(self, kind: str = "", page_size: int = 0, page_token: str = "") -> tuple[list[Entry], str]:
        """One page of :meth:`records` and the token of the next ("" after the last page)."""

    @abc.abstractmethod
    async def delete(self, kind: str, record_id: str, *, caller: Caller | None = None) -> Entry: ...

    @abc.abstractmethod
    async def watch(self, kind: str = "", name: str = "") -> Watch[RecordEvent]:
        """EXISTING for every live record (of ``kind`` when given), then every change."""

    @abc.abstractmethod
    async def run_sweeper(self) -> None:
        """Emit EXPIRED on time even when nobody calls in, forever (cancel to stop)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (and start background tasks) before the first call."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End every watch (their streams finish) and release connections."""


__all__ = [
    "BackendLost",
    "BusStore",
    "RegistryStore",
    "messages",
    "record_from_proto",
    "record_to_proto",
]
