"""Snapshot-then-follow watches: the one way a service streams its state and every change.

A service core keeps a :class:`~tendril.core.fanout.Fanout` and publishes each change to it.
Its ``watch`` method returns a :class:`Watch`, built in one step with no ``await`` inside: the
snapshot of the live state is taken, the subscription is registered and the snapshot is
queued ahead of anything published later, so no change can fall between the snapshot and the
changes that follow (a core whose state other threads touch builds it under its lock). The
servicer relays it::

    # core (no gRPC): the state now, then changes; its own error when the watcher falls behind
    def watch(self, run_id: str, name: str = "") -> Watch[RoundEvent]:
        return Watch(
            self.round_events,  # a Fanout[RoundEvent] every change is published to
            lambda: [RoundEvent.current(run) for run in self.runs(run_id)],
            queue=WATCH_QUEUE,
            overflow=lambda exc: ParamserverError(
                ErrorKind.ABORTED, f"{exc}; start a new WatchRound", reason=ParamserverReason.WATCH_OVERFLOW
            ),
            name=name,
            accepts=lambda event: event.run_id == run_id,
            until=lambda event: event.closed,  # optional: the stream ends after this item
        )

    # servicer
    async def WatchRound(self, request, context):
        watch = self.core.watch(request.run_id, name=caller_id(context) or context.peer())
        async for event in watch.relay(context):
            yield event_to_proto(event)

:meth:`Watch.relay` sends the stream's initial metadata once the watch is registered (a
client that awaits it knows it will see every later change), yields the snapshot then each
change, ends after an item ``until`` accepts or when the source closes every watch (a
graceful stop), raises the caller's ``overflow`` error when the watcher fell ``queue``
changes behind (it must watch again and gets a fresh snapshot: never a silently wrong
picture), and unsubscribes however it ends (cancelled included). Everything here runs on one
asyncio event loop and has no gRPC in it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from tendril.core.fanout import Fanout, Overflow, Subscription, SubscriptionOverflow

T = TypeVar("T")


class StreamContext(Protocol):
    """What :meth:`Watch.relay` needs of a server stream's context (``grpc.aio.ServicerContext``)."""

    async def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, str]], /) -> None: ...


class Watch(Generic[T]):
    """The snapshot of a state, then every change to it, through one bounded subscription.

    ``snapshot`` is called once, at construction; its items come first. ``queue`` is how many
    changes the watcher may fall behind (the snapshot does not count against it). ``accepts``
    filters the published changes; ``until`` ends the watch after the first item (snapshot or
    change) it is true for.
    """

    def __init__(
        self,
        source: Fanout[T],
        snapshot: Callable[[], Iterable[T]],
        *,
        queue: int,
        overflow: Callable[[SubscriptionOverflow], Exception],
        name: str = "",
        accepts: Callable[[T], bool] | None = None,
        until: Callable[[T], bool] | None = None,
    ) -> None:
        # NOTE: no await from here to the end of __init__: the snapshot and the registration
        # happen at one point of the event loop, so every later publish lands behind them.
        items = list(snapshot())
        self._source = source
        self._overflow = overflow
        self._until = until
        self.subscription: Subscription[T] = source.subscribe(
            maxsize=queue + len(items), overflow=Overflow.CLOSE, name=name, accepts=accepts
        )
        for item in items:
            self.subscription.offer(item)

    def __len__(self) -> int:
        """Items queued and not yet taken."""
        return len(self.subscription)

    async def get(self) -> T:
        """The next item, raw: raises ``SubscriptionOverflow`` / ``SubscriptionClosed``."""
        return await self.subscription.get()

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        self._source.unsubscribe(self.subscription)

    def __aiter__(self) -> AsyncIterator[T]:
        return self.relay()

    async def relay(self, context: StreamContext | None = None) -> AsyncIterator[T]:
        """Initial metadata on ``context``, then the snapshot and every change (see the module doc)."""
        try:
            if context is not None:
                await context.send_initial_metadata(())
            async for item in self.subscription:
                yield item
                if self._until is not None and self._until(item):
                    return
        except SubscriptionOverflow as exc:
            raise self._overflow(exc) from exc
        finally:
            self.close()
