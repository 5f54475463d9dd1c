"""Fan-out of events to many stream subscribers, each through its own bounded queue.

A publisher never waits for a subscriber and a subscriber never holds more than ``maxsize``
items, whatever its speed. What happens when a subscriber's queue is full is its
:class:`Overflow` policy:

* ``DROP_OLDEST`` — the oldest queued item is dropped and counted (a topic bus: later news
  is worth more than old news, and a lost message is the subscriber's loss only);
* ``CLOSE`` — the subscription ends with :class:`SubscriptionOverflow` (a state watch: a
  watcher that missed an event must start over from a fresh snapshot, never go on silently
  wrong).

Everything here runs on one asyncio event loop; it has no gRPC in it.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Overflow(enum.Enum):
    """What a full subscriber queue does with the next item."""

    DROP_OLDEST = "drop_oldest"
    CLOSE = "close"


class SubscriptionClosed(Exception):
    """The subscription was closed (by its owner or because the source stopped)."""


class SubscriptionOverflow(SubscriptionClosed):
    """The subscriber fell ``maxsize`` items behind and was cut off (policy CLOSE)."""


class Subscription(Generic[T]):
    """One subscriber's bounded queue. Iterate it (``async for``) or call :meth:`get`."""

    def __init__(
        self,
        *,
        maxsize: int,
        overflow: Overflow,
        name: str = "",
        accepts: Callable[[T], bool] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.name = name
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0  # items dropped under DROP_OLDEST
        self.delivered = 0  # items handed to the subscriber
        self._accepts = accepts
        self._items: collections.deque[T] = collections.deque()
        self._ready = asyncio.Event()
        self._closed: SubscriptionClosed | None = None

    def accepts(self, item: T) -> bool:
        return self._accepts is None or self._accepts(item)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> bool:
        """Queue ``item`` without ever waiting. False when the subscription is (now) closed."""
        if self._closed is not None:
            return False
        if len(self._items) >= self.maxsize:
            if self.overflow is Overflow.CLOSE:
                self.close(SubscriptionOverflow(f"subscriber {self.name!r} fell {self.maxsize} events behind"))
                return False
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()
        return True

    def close(self, error: SubscriptionClosed | None = None) -> None:
        """End the subscription; queued items are discarded; a waiting :meth:`get` raises."""
        if self._closed is None:
            self._closed = error or SubscriptionClosed(f"subscription {self.name!r} closed")
            self._items.clear()
            self._ready.set()

    async def get(self) -> T:
        """The next item; raises the closing error once the subscription is closed."""
        while not self._items:
            if self._closed is not None:
                raise self._closed
            self._ready.clear()
            await self._ready.wait()
        if self._closed is not None:
            raise self._closed
        self.delivered += 1
        return self._items.popleft()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except SubscriptionOverflow:
                raise
            except SubscriptionClosed:
                return


class Fanout(Generic[T]):
    """A set of subscriptions that each published item is offered to."""

    def __init__(self) -> None:
        self._subs: set[Subscription[T]] = set()

    def __len__(self) -> int:
        return len(self._subs)

    @property
    def subscriptions(self) -> list[Subscription[T]]:
        return list(self._subs)

    def subscribe(
        self,
        *,
        maxsize: int,
        overflow: Overflow,
        name: str = "",
        accepts: Callable[[T], bool] | None = None,
    ) -> Subscription[T]:
        sub: Subscription[T] = Subscription(maxsize=maxsize, overflow=overflow, name=name, accepts=accepts)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription[T]) -> None:
        self._subs.discard(sub)
        sub.close()

    def publish(self, item: T) -> int:
        """Offer ``item`` to every subscription that accepts it; returns how many queued it.

        Subscriptions closed by overflow are removed here.
        """
        delivered = 0
        for sub in list(self._subs):
            if not sub.accepts(item):
                continue
            if sub.offer(item):
                delivered += 1
            elif sub.closed:
                self._subs.discard(sub)
        return delivered

    def close_all(self, error: SubscriptionClosed | None = None) -> None:
        for sub in list(self._subs):
            sub.close(error)
        self._subs.clear()
