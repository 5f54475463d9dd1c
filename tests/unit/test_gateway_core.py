"""Gateway cores: bus fan-out with bounded subscriber queues; registry TTL and watch events."""

from __future__ import annotations

import asyncio

import pytest

from tendril.core.errors import ErrorKind
from tendril.core.fanout import SubscriptionOverflow
from tendril.gateway.bus import TopicBus
from tendril.gateway.errors import GatewayError
from tendril.gateway.registry import RecordEventType, Registry


class Clock:
    def __init__(self) -> None:
        self.t = 5_000.0

    def __call__(self) -> float:
        return self.t


async def test_bus_fans_out_to_every_subscriber_of_the_topic() -> None:
    bus: TopicBus[str] = TopicBus(queue_size=10)
    a = bus.subscribe("tendril/worker", "a")
    b = bus.subscribe("tendril/worker", "b")
    other = bus.subscribe("other", "c")
    assert bus.publish("tendril/worker", "m1") == 2
    assert bus.publish("tendril/worker", "m2") == 2
    assert bus.publish("nobody/listens", "x") == 0
    assert [await a.get(), await a.get()] == ["m1", "m2"]
    assert [await b.get(), await b.get()] == ["m1", "m2"]
    assert len(other) == 0
    bus.unsubscribe("tendril/worker", a)
    assert bus.publish("tendril/worker", "m3") == 1
    assert bus.subscribers("tendril/worker") == 1


async def test_slow_subscriber_drops_oldest_and_never_blocks_publishers() -> None:
    bus: TopicBus[int] = TopicBus(queue_size=5)
    slow = bus.subscribe("t", "slow")
    fast = bus.subscribe("t", "fast")
    got_fast = []
    for i in range(100):
        assert bus.publish("t", i) == 2  # returns at once, whatever the slow one does
        got_fast.append(await fast.get())
    assert got_fast == list(range(100))
    assert len(slow) == 5  # memory bounded
    assert slow.dropped == 95 and bus.dropped == 95
    assert [await slow.get() for _ in range(5)] == [95, 96, 97, 98, 99]  # newest kept
    assert fast.dropped == 0


async def test_subscriber_waits_for_messages_and_ends_on_close() -> None:
    bus: TopicBus[str] = TopicBus()
    sub = bus.subscribe("t", "s")
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    bus.publish("t", "hello")
    assert await asyncio.wait_for(waiter, 1) == "hello"
    received = []

    async def drain() -> None:
        async for item in sub:
            received.append(item)

    task = asyncio.create_task(drain())
    bus.publish("t", "last")
    await asyncio.sleep(0.01)
    bus.close()
    await asyncio.wait_for(task, 1)
    assert received == ["last"]


def test_bus_rejects_empty_topic() -> None:
    bus: TopicBus[str] = TopicBus()
    for call in (lambda: bus.publish("", "x"), lambda: bus.subscribe("", "s")):
        with pytest.raises(GatewayError) as err:
            call()
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT


async def test_registry_ttl_expiry_and_events() -> None:
    clock = Clock()
    reg = Registry(clock=clock)
    reg.put("worker", "w1", {"v": 1}, ttl_seconds=15)
    watch = reg.watch("worker")
    everything = reg.watch()
    refreshed = reg.put("worker", "w1", {"v": 2}, ttl_seconds=15)
    assert refreshed.version == 2 and refreshed.expires_at == clock.t + 15
    reg.put("dataset", "d1", None, ttl_seconds=5)
    clock.t += 14.9
    assert [e.id for e in reg.records()] == ["w1"]  # d1 expired, w1 still live
    assert reg.get("worker", "w1").payload == {"v": 2}
    clock.t += 0.2
    assert reg.records() == []
    with pytest.raises(GatewayError) as gone:
        reg.get("worker", "w1")
    assert gone.value.kind is ErrorKind.NOT_FOUND
    events = [(ev.type, ev.entry.id) for ev in [await watch.get() for _ in range(3)]]
    assert events == [
        (RecordEventType.EXISTING, "w1"),
        (RecordEventType.PUT, "w1"),
        (RecordEventType.EXPIRED, "w1"),
    ]
    all_events = [(ev.type, ev.entry.id) for ev in [await everything.get() for _ in range(5)]]
    assert all_events == [
        (RecordEventType.EXISTING, "w1"),
        (RecordEventType.PUT, "w1"),
        (RecordEventType.PUT, "d1"),
        (RecordEventType.EXPIRED, "d1"),
        (RecordEventType.EXPIRED, "w1"),
    ]


async def test_registry_delete_list_order_and_bad_input() -> None:
    reg = Registry(clock=Clock())
    reg.put("worker", "b", None, 10)
    reg.put("worker", "a", None, 10)
    reg.put("dataset", "z", None, 10)
    assert [(e.kind, e.id) for e in reg.records()] == [("dataset", "z"), ("worker", "a"), ("worker", "b")]
    watch = reg.watch("worker")
    reg.delete("worker", "a")
    assert [e.id for e in reg.records("worker")] == ["b"]
    kinds = [(await watch.get()).type for _ in range(3)]
    assert kinds == [RecordEventType.EXISTING, RecordEventType.EXISTING, RecordEventType.DELETED]
    for call in (
        lambda: reg.put("", "x", None, 1),
        lambda: reg.put("k", "", None, 1),
        lambda: reg.put("k", "x", None, 0),
        lambda: reg.put("k", "x", None, -1),
        lambda: reg.put("k", "x", None, 1e9),
    ):
        with pytest.raises(GatewayError) as bad:
            call()
        assert bad.value.kind is ErrorKind.INVALID_ARGUMENT
    with pytest.raises(GatewayError) as missing:
        reg.delete("worker", "a")
    assert missing.value.kind is ErrorKind.NOT_FOUND


async def test_registry_sweeper_expires_on_time_without_callers() -> None:
    reg = Registry()  # real clock
    watch = reg.watch()
    sweeper = asyncio.create_task(reg.run_sweeper())
    try:
        reg.put("worker", "w", None, ttl_seconds=0.2)
        assert (await asyncio.wait_for(watch.get(), 2)).type is RecordEventType.PUT
        event = await asyncio.wait_for(watch.get(), 5)
        assert event.type is RecordEventType.EXPIRED and event.entry.id == "w"
    finally:
        sweeper.cancel()


async def test_slow_registry_watcher_is_cut_off() -> None:
    reg = Registry(clock=Clock(), watch_queue=2)
    watch = reg.watch()
    for i in range(3):
        reg.put("k", str(i), None, 10)
    with pytest.raises(SubscriptionOverflow):
        await watch.get()
