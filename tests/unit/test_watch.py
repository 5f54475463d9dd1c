"""tendril.core.watch: snapshot then changes, nothing lost between them, overflow, unsubscribe."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.fanout import Fanout, SubscriptionOverflow
from tendril.core.watch import Watch


class WatchTooSlow(Exception):
    """The caller's own overflow error."""


class Counter:
    """A state (one number) whose every change is published, as a service core does."""

    def __init__(self) -> None:
        self.value = 0
        self.changes: Fanout[int] = Fanout()

    def bump(self) -> None:
        self.value += 1
        self.changes.publish(self.value)

    def watch(self, queue: int = 1000, until: int | None = None) -> Watch[int]:
        return Watch(
            self.changes,
            lambda: [self.value],
            queue=queue,
            overflow=lambda exc: WatchTooSlow(str(exc)),
            name="test",
            until=None if until is None else (lambda v: v >= until),
        )


class Context:
    """Records what a relay does to its stream context."""

    def __init__(self, log: list[object]) -> None:
        self.log = log

    async def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, str]], /) -> None:
        self.log.append("registered")
        await asyncio.sleep(0)  # sending lets other tasks run (and change the state)


async def test_snapshot_comes_first_then_changes_in_order() -> None:
    state = Counter()
    state.bump()
    watch = state.watch(until=4)
    state.bump()
    state.bump()
    log: list[object] = ["start"]
    relay = watch.relay(Context(log))
    log.append(await anext(relay))  # initial metadata goes out before the first item
    state.bump()
    log.extend([item async for item in relay])
    assert log == ["start", "registered", 1, 2, 3, 4]
    assert len(state.changes) == 0, "the relay unsubscribed when it ended"


async def test_no_change_falls_between_snapshot_and_follow() -> None:
    """Watches opened while the state keeps changing each see an unbroken sequence."""
    state = Counter()
    stop = asyncio.Event()

    async def churn() -> None:
        while not stop.is_set():
            state.bump()
            await asyncio.sleep(0)

    async def observe() -> list[int]:
        await asyncio.sleep(0)
        seen: list[int] = []
        async for value in state.watch(until=300).relay(Context([])):
            seen.append(value)
        return seen

    churner = asyncio.create_task(churn())
    try:
        runs = await asyncio.wait_for(asyncio.gather(*(observe() for _ in range(20))), 10)
    finally:
        stop.set()
        await churner
    for seen in runs:
        assert seen == list(range(seen[0], 301)), "a change was lost or repeated"
    assert len(state.changes) == 0


async def test_overflow_raises_the_callers_error_and_unsubscribes() -> None:
    state = Counter()
    watch = state.watch(queue=2)
    for _ in range(3):
        state.bump()
    with pytest.raises(WatchTooSlow) as err:
        [item async for item in watch]
    assert isinstance(err.value.__cause__, SubscriptionOverflow)
    assert len(state.changes) == 0


async def test_the_snapshot_does_not_count_against_the_queue() -> None:
    changes: Fanout[str] = Fanout()
    watch = Watch(
        changes,
        lambda: ["a", "b", "c", "d"],
        queue=2,
        overflow=lambda exc: TendrilError(ErrorKind.ABORTED, str(exc), reason="WATCH_OVERFLOW"),
        until=lambda item: item == "f",
    )
    changes.publish("e")
    changes.publish("f")
    assert [item async for item in watch] == ["a", "b", "c", "d", "e", "f"]


async def test_cancelling_the_relay_unsubscribes() -> None:
    state = Counter()
    got: list[int] = []
    first = asyncio.Event()

    async def follow() -> None:
        async for value in state.watch().relay(Context([])):
            got.append(value)
            first.set()

    task = asyncio.create_task(follow())
    await asyncio.wait_for(first.wait(), 5)
    assert len(state.changes) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(state.changes) == 0 and got == [0]


async def test_a_consumer_that_stops_early_unsubscribes() -> None:
    state = Counter()
    relay = state.watch().relay()
    assert await anext(relay) == 0
    await relay.aclose()
    assert len(state.changes) == 0


async def test_closing_the_source_ends_the_relay_cleanly() -> None:
    state = Counter()
    watch = state.watch()
    state.bump()
    relay = watch.relay()
    assert await anext(relay) == 0
    state.changes.close_all()
    assert [item async for item in relay] == []


def test_a_failing_snapshot_subscribes_nothing() -> None:
    changes: Fanout[int] = Fanout()

    def missing() -> list[int]:
        raise LookupError("no such thing")

    with pytest.raises(LookupError):
        Watch(changes, missing, queue=1, overflow=lambda exc: WatchTooSlow())
    assert len(changes) == 0
