"""The gateway's store seam: memory and Redis backends pass the same bus and registry tests.

These are the scenarios of test_gateway_core.py (bus fan-out, bounded queues, registry TTL,
versions, events, order, bad input, the sweeper, slow watchers) and of test_gateway_limits.py
(size cap, pages, ownership) through the
:mod:`tendril.gateway.store` ABCs, once per backend. Redis runs as a real redis-server on a
free port (tests/redis_server.py); each test uses its own key prefix.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google.protobuf import any_pb2, wrappers_pb2

from tendril.core.errors import ErrorKind
from tendril.core.fanout import SubscriptionOverflow
from tendril.gateway.errors import GatewayError, GatewayReason
from tendril.gateway.memory import MemoryBus, MemoryRegistry
from tendril.gateway.registry import DEFAULT_PAGE_SIZE, Caller, RecordEventType, secret_hash
from tendril.gateway.store import BusStore, RegistryStore
from tendril_proto.gateway.v1 import gateway_pb2
from tests.redis_server import redis_url  # noqa: F401  (fixture)

BACKENDS = ["memory", "redis"]
_prefixes = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.t = 5_000.0

    def __call__(self) -> float:
        return self.t


def value(text: str) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(wrappers_pb2.StringValue(value=text))
    return out


def envelope(topic: str, text: str) -> gateway_pb2.Envelope:
    return gateway_pb2.Envelope(topic=topic, sender=text)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture(params=BACKENDS)
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """``await make("bus" | "registry", **options)``: a started store of the test's backend."""
    made: list[BusStore | RegistryStore] = []
    clients: list[Any] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    prefix = f"test{next(_prefixes)}:"

    async def factory(what: str, **options: Any) -> Any:
        store: BusStore | RegistryStore
        if request.param == "memory":
            store = MemoryBus(**options) if what == "bus" else MemoryRegistry(**options)
        else:
            from tendril.gateway.redis_store import RedisBus, RedisRegistry, connect

            client = connect(url)
            clients.append(client)
            if what == "bus":
                store = RedisBus(client, url=url, prefix=prefix, **options)
            else:
                store = RedisRegistry(client, url=url, prefix=prefix, **options)
        await store.start()
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()
    for client in clients:
        await client.aclose()


async def test_bus_fans_out_to_every_subscriber_of_the_topic(make: Callable[..., Any]) -> None:
    bus: BusStore = await make("bus", queue_size=10)
    a = await bus.subscribe("tendril/worker", "a")
    b = await bus.subscribe("tendril/worker", "b")
    other = await bus.subscribe("other", "c")
    assert await bus.publish("tendril/worker", envelope("tendril/worker", "m1")) == 2
    assert await bus.publish("tendril/worker", envelope("tendril/worker", "m2")) == 2
    assert await bus.publish("nobody/listens", envelope("nobody/listens", "x")) == 0
    assert [(await a.get()).sender, (await a.get()).sender] == ["m1", "m2"]
    assert [(await b.get()).sender, (await b.get()).sender] == ["m1", "m2"]
    assert len(other) == 0
    bus.unsubscribe("tendril/worker", a)
    assert await bus.publish("tendril/worker", envelope("tendril/worker", "m3")) == 1
    assert bus.subscribers("tendril/worker") == 1


async def test_slow_subscriber_drops_oldest_and_never_blocks_publishers(make: Callable[..., Any]) -> None:
    bus: BusStore = await make("bus", queue_size=5)
    slow = await bus.subscribe("t", "slow")
    fast = await bus.subscribe("t", "fast")
    got_fast = []
    for i in range(100):
        assert await bus.publish("t", envelope("t", str(i))) == 2  # returns at once, whatever the slow one does
        got_fast.append(int((await fast.get()).sender))
    assert got_fast == list(range(100))
    assert len(slow) == 5  # memory bounded
    assert slow.dropped == 95 and bus.dropped == 95
    assert [int((await slow.get()).sender) for _ in range(5)] == [95, 96, 97, 98, 99]  # newest kept
    assert fast.dropped == 0


async def test_subscriber_waits_for_messages_and_ends_on_close(make: Callable[..., Any]) -> None:
    bus: BusStore = await make("bus")
    sub = await bus.subscribe("t", "s")
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    await bus.publish("t", envelope("t", "hello"))
    assert (await asyncio.wait_for(waiter, 5)).sender == "hello"
    received = []

    async def drain() -> None:
        async for item in sub:
            received.append(item.sender)

    task = asyncio.create_task(drain())
    await bus.publish("t", envelope("t", "last"))
    await until(lambda: received == ["last"])
    await bus.close()
    await asyncio.wait_for(task, 1)
    assert received == ["last"]


async def test_bus_rejects_empty_topic(make: Callable[..., Any]) -> None:
    bus: BusStore = await make("bus")
    for call in (lambda: bus.publish("", envelope("", "x")), lambda: bus.subscribe("", "s")):
        with pytest.raises(GatewayError) as err:
            await call()
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT


async def test_two_buses_on_one_backend_share_topics(make: Callable[..., Any], request: pytest.FixtureRequest) -> None:
    if "memory" in request.node.callspec.id:
        pytest.skip("a memory bus is its own network")
    a: BusStore = await make("bus")
    b: BusStore = await make("bus")
    on_b = await b.subscribe("tendril/worker", "on-b")
    assert await a.publish("tendril/worker", envelope("tendril/worker", "from-a")) == 1  # counted across gateways
    assert (await asyncio.wait_for(on_b.get(), 5)).sender == "from-a"


async def test_registry_ttl_expiry_and_events(make: Callable[..., Any]) -> None:
    clock = Clock()
    reg: RegistryStore = await make("registry", clock=clock)
    await reg.put("worker", "w1", value("1"), ttl_seconds=15)
    watch = await reg.watch("worker")
    everything = await reg.watch()
    refreshed = await reg.put("worker", "w1", value("2"), ttl_seconds=15)
    assert refreshed.version == 2 and refreshed.expires_at == clock.t + 15
    await reg.put("dataset", "d1", None, ttl_seconds=5)
    clock.t += 14.9
    assert [e.id for e in await reg.records()] == ["w1"]  # d1 expired, w1 still live
    assert (await reg.get("worker", "w1")).payload == value("2")
    clock.t += 0.2
    assert await reg.records() == []
    with pytest.raises(GatewayError) as gone:
        await reg.get("worker", "w1")
    assert gone.value.kind is ErrorKind.NOT_FOUND
    events = [(ev.type, ev.entry.id) for ev in [await asyncio.wait_for(watch.get(), 5) for _ in range(3)]]
    assert events == [
        (RecordEventType.EXISTING, "w1"),
        (RecordEventType.PUT, "w1"),
        (RecordEventType.EXPIRED, "w1"),
    ]
    all_events = [(ev.type, ev.entry.id) for ev in [await asyncio.wait_for(everything.get(), 5) for _ in range(5)]]
    assert all_events == [
        (RecordEventType.EXISTING, "w1"),
        (RecordEventType.PUT, "w1"),
        (RecordEventType.PUT, "d1"),
        (RecordEventType.EXPIRED, "d1"),
        (RecordEventType.EXPIRED, "w1"),
    ]
    again = await reg.put("worker", "w1", value("3"), ttl_seconds=15)
    assert again.version == 1  # a put after expiry starts over


async def test_registry_delete_list_order_and_bad_input(make: Callable[..., Any]) -> None:
    reg: RegistryStore = await make("registry", clock=Clock())
    await reg.put("worker", "b", None, 10)
    await reg.put("worker", "a", None, 10)
    await reg.put("dataset", "z", None, 10)
    await reg.put("work", "er:x", None, 10)  # a kind that is a prefix of another, an id with ':'
    assert [(e.kind, e.id) for e in await reg.records()] == [
        ("dataset", "z"),
        ("work", "er:x"),
        ("worker", "a"),
        ("worker", "b"),
    ]
    watch = await reg.watch("worker")
    deleted = await reg.delete("worker", "a")
    assert deleted.id == "a" and deleted.version == 1
    assert [e.id for e in await reg.records("worker")] == ["b"]
    kinds = [(await asyncio.wait_for(watch.get(), 5)).type for _ in range(3)]
    assert kinds == [RecordEventType.EXISTING, RecordEventType.EXISTING, RecordEventType.DELETED]
    for call in (
        lambda: reg.put("", "x", None, 1),
        lambda: reg.put("k", "", None, 1),
        lambda: reg.put("k", "x", None, 0),
        lambda: reg.put("k", "x", None, -1),
        lambda: reg.put("k", "x", None, 1e9),
    ):
        with pytest.raises(GatewayError) as bad:
            await call()
        assert bad.value.kind is ErrorKind.INVALID_ARGUMENT
    with pytest.raises(GatewayError) as missing:
        await reg.delete("worker", "a")
    assert missing.value.kind is ErrorKind.NOT_FOUND


async def test_registry_sweeper_expires_on_time_without_callers(make: Callable[..., Any]) -> None:
    reg: RegistryStore = await make("registry")  # real clock
    watch = await reg.watch()
    sweeper = asyncio.create_task(reg.run_sweeper())
    try:
        await reg.put("worker", "w", None, ttl_seconds=0.2)
        assert (await asyncio.wait_for(watch.get(), 2)).type is RecordEventType.PUT
        event = await asyncio.wait_for(watch.get(), 5)
        assert event.type is RecordEventType.EXPIRED and event.entry.id == "w"
    finally:
        sweeper.cancel()


async def test_slow_registry_watcher_is_cut_off(make: Callable[..., Any]) -> None:
    reg: RegistryStore = await make("registry", clock=Clock(), watch_queue=2)
    watch = await reg.watch()
    for i in range(3):
        await reg.put("k", str(i), None, 10)
    await until(lambda: watch.subscription.closed)
    with pytest.raises(SubscriptionOverflow):
        await watch.get()


async def test_two_registries_on_one_backend_are_one_registry(
    make: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    if "memory" in request.node.callspec.id:
        pytest.skip("a memory registry is its own network")
    a: RegistryStore = await make("registry")
    b: RegistryStore = await make("registry")
    watch_b = await b.watch("worker")
    await a.put("worker", "w", value("x"), ttl_seconds=30)
    assert (await b.get("worker", "w")).payload == value("x")
    assert (await b.put("worker", "w", value("y"), ttl_seconds=30)).version == 2  # one version sequence
    events = [await asyncio.wait_for(watch_b.get(), 5) for _ in range(2)]
    assert [(e.type, e.entry.version) for e in events] == [(RecordEventType.PUT, 1), (RecordEventType.PUT, 2)]
    await b.delete("worker", "w")
    assert await a.records() == []


# -- limits and ownership, the same in every backend ------------------------------------------------


async def _refused(call: Callable[[], Any], kind: ErrorKind, reason: GatewayReason) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await call()
    assert caught.value.kind == kind and caught.value.reason == reason, caught.value
    return caught.value


async def test_registry_size_cap(make: Callable[..., Any]) -> None:
    reg: RegistryStore = await make("registry", clock=Clock(), max_record_bytes=2048)
    await reg.put_as("worker", "ok", None, 10, size=2048)
    err = await _refused(
        lambda: reg.put_as("worker", "big", None, 10, size=2049),
        ErrorKind.INVALID_ARGUMENT,
        GatewayReason.RECORD_TOO_LARGE,
    )
    assert err.metadata["size"] == "2049" and err.metadata["limit"] == "2048"
    assert [e.id for e in await reg.records()] == ["ok"]


async def test_registry_pages_are_ordered_sized_and_tokens_stable_under_changes(make: Callable[..., Any]) -> None:
    reg: RegistryStore = await make("registry", clock=Clock(), max_page=3)
    for i in range(7):
        await reg.put("worker", f"w{i}", None, 10)
    await reg.put("dataset", "d", None, 10)
    await reg.put("work", "er:x", None, 10)  # a kind that is a prefix of another
    first, token = await reg.page("worker", page_size=3)
    assert [e.id for e in first] == ["w0", "w1", "w2"] and token
    # changes between pages: one before the cursor added, the cursor record deleted, one after added
    await reg.put("worker", "w00", None, 10)
    await reg.delete("worker", "w2")
    await reg.put("worker", "w35", None, 10)
    second, token = await reg.page("worker", page_size=3, page_token=token)
    assert [e.id for e in second] == ["w3", "w35", "w4"]
    third, token = await reg.page("worker", page_size=100, page_token=token)  # lowered to the maximum, 3
    assert [e.id for e in third] == ["w5", "w6"] and token == ""
    # all kinds, page by page, across the kinds' boundaries, in (kind, id) order
    listed, token = [], ""
    while True:
        page, token = await reg.page(page_size=2, page_token=token)
        assert len(page) <= 2
        listed += [(e.kind, e.id) for e in page]
        if not token:
            break
    assert listed == [(e.kind, e.id) for e in await reg.records()]
    assert listed[:3] == [("dataset", "d"), ("work", "er:x"), ("worker", "w0")]
    await _refused(
        lambda: reg.page("dataset", page_token=worker_token()),
        ErrorKind.INVALID_ARGUMENT,
        GatewayReason.PAGE_TOKEN_INVALID,
    )
    await _refused(
        lambda: reg.page("k", page_token="garbage"), ErrorKind.INVALID_ARGUMENT, GatewayReason.PAGE_TOKEN_INVALID
    )


def worker_token() -> str:
    """A token given for kind "worker" (refused for any other kind)."""
    from tendril.gateway.registry import Entry, encode_token

    return encode_token("worker", Entry("worker", "w0", None, 1, 0, 1))


async def test_registry_pages_skip_expired_records_and_an_empty_registry(make: Callable[..., Any]) -> None:
    clock = Clock()
    reg: RegistryStore = await make("registry", clock=clock)
    assert await reg.page() == ([], "")
    for i in range(DEFAULT_PAGE_SIZE + 1):
        await reg.put("k", f"{i:04d}", None, 10 if i % 2 else 20)
    page, token = await reg.page("k")
    assert len(page) == DEFAULT_PAGE_SIZE and token
    rest, token = await reg.page("k", page_token=token)
    assert [e.id for e in rest] == [f"{DEFAULT_PAGE_SIZE:04d}"] and token == ""
    clock.t += 15  # the odd ones expired
    page, token = await reg.page("k", page_size=10)
    assert [e.id for e in page] == [f"{i:04d}" for i in range(0, 20, 2)] and token


async def test_registry_ownership_by_secret(make: Callable[..., Any]) -> None:
    reg: RegistryStore = await make("registry", clock=Clock())
    made = await reg.put_as("worker", "w", value("v1"), 10, caller=Caller())
    assert len(made.secret) >= 43 and made.entry.secret_sha256 == secret_hash(made.secret)
    again = await reg.put_as("worker", "w", value("v2"), 10, caller=Caller(secret=made.secret))
    assert again.secret == "" and again.entry.version == 2 and again.entry.secret_sha256 == made.entry.secret_sha256
    for other in (Caller(), Caller(secret="guess"), Caller(identity="someone")):
        await _refused(
            lambda other=other: reg.put_as("worker", "w", value("evil"), 10, caller=other),
            ErrorKind.PERMISSION_DENIED,
            GatewayReason.RECORD_NOT_OWNED,
        )
        await _refused(
            lambda other=other: reg.delete("worker", "w", caller=other),
            ErrorKind.PERMISSION_DENIED,
            GatewayReason.RECORD_NOT_OWNED,
        )
    assert (await reg.get("worker", "w")).payload == value("v2")
    await reg.delete("worker", "w", caller=Caller(secret=made.secret))
    await _refused(lambda: reg.get("worker", "w"), ErrorKind.NOT_FOUND, GatewayReason.RECORD_NOT_FOUND)


async def test_registry_expired_record_is_claimed_anew(make: Callable[..., Any]) -> None:
    clock = Clock()
    reg: RegistryStore = await make("registry", clock=clock)
    old = (await reg.put_as("worker", "w", value("a"), 5, caller=Caller())).secret
    clock.t += 6
    taken = await reg.put_as("worker", "w", value("b"), 5, caller=Caller())
    assert taken.secret and taken.secret != old and taken.entry.version == 1
    await _refused(
        lambda: reg.put_as("worker", "w", value("a"), 5, caller=Caller(secret=old)),
        ErrorKind.PERMISSION_DENIED,
        GatewayReason.RECORD_NOT_OWNED,
    )
    clock.t += 6
    back = await reg.put_as("worker", "w", value("a"), 5, caller=Caller(secret=old))
    assert back.secret not in ("", old) and back.entry.secret_sha256 == secret_hash(back.secret)


async def test_registry_ownership_by_certificate(make: Callable[..., Any]) -> None:
    reg: RegistryStore = await make("registry", clock=Clock())
    made = await reg.put_as("worker", "w", None, 10, caller=Caller(identity="worker-a"))
    assert made.secret == "" and made.entry.owner == "worker-a" and made.entry.secret_sha256 == b""
    await reg.put_as("worker", "w", None, 10, caller=Caller(identity="worker-a"))
    assert (await reg.get("worker", "w")).owner == "worker-a"
    for call in (
        lambda: reg.put_as("worker", "w", None, 10, caller=Caller(identity="worker-b")),
        lambda: reg.delete("worker", "w", caller=Caller(identity="worker-b")),
    ):
        await _refused(call, ErrorKind.PERMISSION_DENIED, GatewayReason.RECORD_NOT_OWNED)
    await reg.delete("worker", "w", caller=Caller(identity="worker-a"))


async def test_two_gateways_share_ownership_and_pages_and_claim_a_record_once(
    make: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    if "memory" in request.node.callspec.id:
        pytest.skip("a memory registry is its own network")
    a: RegistryStore = await make("registry", max_page=2)
    b: RegistryStore = await make("registry", max_page=2)
    made = await a.put_as("worker", "w", value("a"), 30, caller=Caller())
    await _refused(
        lambda: b.put_as("worker", "w", value("b"), 30, caller=Caller()),
        ErrorKind.PERMISSION_DENIED,
        GatewayReason.RECORD_NOT_OWNED,
    )
    assert (await b.put_as("worker", "w", value("b"), 30, caller=Caller(secret=made.secret))).entry.version == 2
    for i in range(3):
        await a.put("worker", f"x{i}", None, 30)
    first, token = await a.page("worker")
    rest, end = await b.page("worker", page_token=token)  # b goes on where a stopped
    assert [e.id for e in first + rest] == ["w", "x0", "x1", "x2"] and end == ""
    # many callers create one new record at once through both gateways: exactly one owns it
    results = await asyncio.gather(
        *(g.put_as("worker", "race", value(str(i)), 30, caller=Caller()) for i in range(10) for g in (a, b)),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, GatewayError) and r.reason == GatewayReason.RECORD_NOT_OWNED]
    assert len(won) == 1 and len(lost) == len(results) - 1, results
    stored = await a.get("worker", "race")
    assert stored.version == 1 and stored.secret_sha256 == secret_hash(won[0].secret)
    # Deletes without the secret racing the owner's Put: the owner's write stands
    await asyncio.gather(
        b.put_as("worker", "race", value("owner"), 30, caller=Caller(secret=won[0].secret)),
        *(g.delete("worker", "race", caller=Caller(secret="guess")) for g in (a, b)),
        return_exceptions=True,
    )
    assert (await a.get("worker", "race")).payload == value("owner")
    await b.delete("worker", "race", caller=Caller(secret=won[0].secret))
    await _refused(lambda: a.get("worker", "race"), ErrorKind.NOT_FOUND, GatewayReason.RECORD_NOT_FOUND)
