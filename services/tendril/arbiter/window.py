"""Windows of requests: at most ``size`` items, or what arrived within ``seconds`` of the first.

No gRPC. The input is bounded: when ``capacity`` items wait already, :meth:`Windower.put`
evicts the oldest waiting item and hands it back, so the caller can record it as dropped
(a flood of requests costs bounded memory and every request still gets an outcome).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Windower(Generic[T]):
    def __init__(
        self,
        *,
        size: int,
        seconds: float,
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1 or seconds <= 0:
            raise ValueError("window size must be >= 1 and seconds > 0")
        self.size = size
        self.seconds = seconds
        self.capacity = capacity if capacity is not None else max(1000, 10 * size)
        self._clock = clock
        self._items: collections.deque[T] = collections.deque()
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> T | None:
        """Queue ``item``; returns the evicted oldest item when the queue was full."""
        evicted = self._items.popleft() if len(self._items) >= self.capacity else None
        self._items.append(item)
        self._arrived.set()
        return evicted

    def drain(self) -> list[T]:
        """Everything waiting, now (used when stopping)."""
        items = list(self._items)
        self._items.clear()
        return items

    async def next(self) -> list[T]:
        """The next window: waits for a first item, then up to ``seconds`` for more."""
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        closes = self._clock() + self.seconds
        while len(self._items) < self.size:
            left = closes - self._clock()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=left)
            except TimeoutError:
                break
        count = min(self.size, len(self._items))
        return [self._items.popleft() for _ in range(count)]
