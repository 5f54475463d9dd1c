"""``gateway.backend = "memory"``: the in-process cores behind the :mod:`~tendril.gateway.store` ABCs.

Today's gateway, unchanged in behaviour: :class:`~tendril.gateway.bus.TopicBus` and
:class:`~tendril.gateway.registry.Registry` hold everything in this process, so this gateway
is the whole network (the embedded default of ``make run-worker``).
"""

from __future__ import annotations

from collections.abc import Callable

from tendril.core.fanout import Subscription
from tendril.core.watch import Watch
from tendril.gateway.bus import DEFAULT_QUEUE_SIZE, TopicBus
from tendril.gateway.registry import (
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_WATCH_QUEUE,
    Caller,
    Entry,
    RecordEvent,
    Registry,
    Stored,
)
from tendril.gateway.store import BusStore, RegistryStore
from tendril_proto.gateway.v1 import gateway_pb2


class MemoryBus(BusStore):
    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.core: TopicBus[gateway_pb2.Envelope] = TopicBus(queue_size=queue_size)

    async def publish(self, topic: str, envelope: gateway_pb2.Envelope) -> int:
        return self.core.publish(topic, envelope)

    async def subscribe(self, topic: str, subscriber: str = "") -> Subscription[gateway_pb2.Envelope]:
        return self.core.subscribe(topic, subscriber)

    def unsubscribe(self, topic: str, sub: Subscription[gateway_pb2.Envelope]) -> None:
        self.core.unsubscribe(topic, sub)

    def subscribers(self, topic: str) -> int:
        return self.core.subscribers(topic)

    async def start(self) -> None:
        """Nothing to connect: the state lives in this process."""

    async def close(self) -> None:
        self.core.close()

    @property
    def published(self) -> int:
        return self.core.published

    @property
    def dropped(self) -> int:
        return self.core.dropped


class MemoryRegistry(RegistryStore):
    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        watch_queue: int = DEFAULT_WATCH_QUEUE,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_page: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        limits = {"watch_queue": watch_queue, "max_record_bytes": max_record_bytes, "max_page": max_page}
        self.core = Registry(**limits) if clock is None else Registry(clock=clock, **limits)
        self.max_record_bytes = max_record_bytes
        self.max_page = max_page

    @property
    def writes(self) -> int:
        return self.core.writes

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
        return self.core.put_as(kind, record_id, payload, ttl_seconds, caller=caller, size=size)

    async def page(self, kind: str = "", page_size: int = 0, page_token: str = "") -> tuple[list[Entry], str]:
        return self.core.page(kind, page_size, page_token)

    async def get(self, kind: str, record_id: str) -> Entry:
        return self.core.get(kind, record_id)

    async def records(self, kind: str = "") -> list[Entry]:
        return self.core.records(kind)

    async def delete(self, kind: str, record_id: str, *, caller: Caller | None = None) -> Entry:
        return self.core.delete(kind, record_id, caller=caller)

    async def watch(self, kind: str = "", name: str = "") -> Watch[RecordEvent]:
        return self.core.watch(kind, name)

    async def run_sweeper(self) -> None:
        await self.core.run_sweeper()

    async def start(self) -> None:
        """Nothing to connect: the state lives in this process."""

    async def close(self) -> None:
        self.core.close()
