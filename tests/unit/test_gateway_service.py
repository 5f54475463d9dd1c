"""The gateway over gRPC (in-process server): bus streams, registry TTL/Watch, status codes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from tendril.core.announce import RegistryAnnouncer
from tendril.core.channel import open_channel
from tendril.core.gateways import Gateways
from tendril.core.ports import free_port
from tendril.core.registry_client import list_records
from tendril.gateway.errors import GatewayError
from tendril.gateway.limits import GatewayLimits, Rate
from tendril.gateway.registry import DEFAULT_PAGE_SIZE
from tendril.gateway.service import GatewayService
from tendril.scheduler.driver import Driver
from tendril_proto.data.v1 import data_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_sdk.errors import error_metadata, error_reason, error_retry_delay
from tests.redis_server import redis_url  # noqa: F401  (fixture)


def payload(text: str) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(wrappers_pb2.StringValue(value=text))
    return out


def _service(request: pytest.FixtureRequest, limits: GatewayLimits | None = None) -> GatewayService:
    """A gateway of the test's backend (its parameter), keys of its own under Redis."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return GatewayService(
        "127.0.0.1:0",
        config_key="test.listen",
        queue_size=16,
        backend=request.param,
        redis_url=url,
        redis_prefix=f"{request.node.name}:",
        limits=limits,
    )


@pytest.fixture(params=["memory", "redis"])
async def gateway(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    service = _service(request)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture(params=["memory", "redis"])
def gateway_of(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A factory of not-yet-started gateways of either backend with given limits."""
    return lambda limits: _service(request, limits)


async def test_publish_subscribe_over_grpc(gateway: GatewayService) -> None:
    async with open_channel(gateway.address, peer_id="peer-1") as channel:
        bus = gateway_pb2_grpc.BusServiceStub(channel)
        calls = [bus.Subscribe(gateway_pb2.SubscribeRequest(topic="tendril/worker")) for _ in range(2)]
        for call in calls:
            await call.initial_metadata()  # sent once the subscription exists
        reply = await bus.Publish(gateway_pb2.PublishRequest(topic="tendril/worker", payload=payload("hi")))
        assert reply.delivered == 2
        for call in calls:
            message = await asyncio.wait_for(call.read(), 5)
            value = wrappers_pb2.StringValue()
            assert message.envelope.payload.Unpack(value) and value.value == "hi"
            assert message.envelope.sender == "peer-1"  # defaulted from the caller's id
            assert message.envelope.topic == "tendril/worker"
            assert message.envelope.published_at.seconds > 0
            call.cancel()
        for _ in range(100):
            if gateway.bus.subscribers("tendril/worker") == 0:
                break
            await asyncio.sleep(0.02)
        assert gateway.bus.subscribers("tendril/worker") == 0  # cancelled streams unsubscribe


async def test_bus_bad_input(gateway: GatewayService) -> None:
    async with open_channel(gateway.address) as channel:
        bus = gateway_pb2_grpc.BusServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as no_topic:
            await bus.Publish(gateway_pb2.PublishRequest(payload=payload("x")))
        assert no_topic.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(no_topic.value) == "TOPIC_MISSING"
        with pytest.raises(grpc.aio.AioRpcError) as no_payload:
            await bus.Publish(gateway_pb2.PublishRequest(topic="t"))
        assert no_payload.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as sub_no_topic:
            async for _ in bus.Subscribe(gateway_pb2.SubscribeRequest()):
                pass
        assert sub_no_topic.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stuck_subscriber_does_not_block_publishers(gateway: GatewayService) -> None:
    async with open_channel(gateway.address) as channel:
        bus = gateway_pb2_grpc.BusServiceStub(channel)
        stuck = bus.Subscribe(gateway_pb2.SubscribeRequest(topic="t", subscriber="stuck"))
        await stuck.initial_metadata()
        big = payload("x" * 60_000)  # fills the transport windows quickly
        start = time.perf_counter()
        for _ in range(400):
            await bus.Publish(gateway_pb2.PublishRequest(topic="t", payload=big), timeout=5)
        elapsed = time.perf_counter() - start
        assert gateway.bus.dropped > 0  # the queue stayed bounded: oldest dropped and counted
        assert elapsed < 30
        stuck.cancel()


async def test_registry_put_get_list_delete_and_expiry_over_grpc(gateway: GatewayService) -> None:
    async with open_channel(gateway.address) as channel:
        reg = gateway_pb2_grpc.RegistryServiceStub(channel)
        watch = reg.Watch(gateway_pb2.WatchRequest(kind="worker"))
        await watch.initial_metadata()
        put = await reg.Put(
            gateway_pb2.PutRequest(
                record=gateway_pb2.Record(kind="worker", id="w1", payload=payload("rec"), ttl_seconds=0.5)
            )
        )
        assert put.record.version == 1 and put.record.expires_at.seconds > 0
        got = await reg.Get(gateway_pb2.GetRequest(kind="worker", id="w1"))
        assert got.record.payload == payload("rec")
        dataset = await reg.Put(
            gateway_pb2.PutRequest(record=gateway_pb2.Record(kind="dataset", id="d", ttl_seconds=30))
        )
        listed = await reg.List(gateway_pb2.ListRequest())
        assert [(r.kind, r.id) for r in listed.records] == [("dataset", "d"), ("worker", "w1")]
        first = await asyncio.wait_for(watch.read(), 5)
        assert first.type == gateway_pb2.RECORD_EVENT_TYPE_PUT
        started = time.monotonic()
        expired = await asyncio.wait_for(watch.read(), 5)
        assert expired.type == gateway_pb2.RECORD_EVENT_TYPE_EXPIRED and expired.record.id == "w1"
        assert time.monotonic() - started < 0.5 + 1.0  # within one TTL (plus slack for a loaded machine)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await reg.Get(gateway_pb2.GetRequest(kind="worker", id="w1"))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        # NOTE: only the owner may delete (it presents the secret its first Put returned)
        await reg.Delete(gateway_pb2.DeleteRequest(kind="dataset", id="d", secret=dataset.secret))
        with pytest.raises(grpc.aio.AioRpcError) as deleted:
            await reg.Delete(gateway_pb2.DeleteRequest(kind="dataset", id="d", secret=dataset.secret))
        assert deleted.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as bad_ttl:
            await reg.Put(gateway_pb2.PutRequest(record=gateway_pb2.Record(kind="worker", id="w")))
        assert bad_ttl.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ttl_seconds" in bad_ttl.value.details()
        watch.cancel()


async def test_stop_ends_open_streams_promptly() -> None:
    service = GatewayService("127.0.0.1:0", config_key="test.listen")
    await service.start()
    async with open_channel(service.address) as channel:
        call = gateway_pb2_grpc.BusServiceStub(channel).Subscribe(gateway_pb2.SubscribeRequest(topic="t"))
        await call.initial_metadata()
        start = time.perf_counter()
        await service.stop()
        assert time.perf_counter() - start < 2.0  # not the 5 s grace
        assert await call.code() == grpc.StatusCode.OK


# -- limits and ownership over gRPC ------------------------------------------------------------------


def _record(kind: str, record_id: str, text: str = "", ttl: float = 30) -> gateway_pb2.Record:
    return gateway_pb2.Record(kind=kind, id=record_id, payload=payload(text), ttl_seconds=ttl)


async def test_a_record_is_rewritten_and_deleted_only_with_its_secret(gateway: GatewayService) -> None:
    async with open_channel(gateway.address, peer_id="owner") as mine, open_channel(gateway.address) as theirs:
        reg, other = gateway_pb2_grpc.RegistryServiceStub(mine), gateway_pb2_grpc.RegistryServiceStub(theirs)
        made = await reg.Put(gateway_pb2.PutRequest(record=_record("worker", "w", "mine")))
        assert len(made.secret) >= 43 and made.record.owner == ""
        assert made.record.owner_secret_sha256 == b""  # the hash stays in the gateway
        for bad in ("", "wrong"):
            with pytest.raises(grpc.aio.AioRpcError) as put:
                await other.Put(gateway_pb2.PutRequest(record=_record("worker", "w", "theirs"), secret=bad))
            assert put.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(put.value) == "RECORD_NOT_OWNED"
            with pytest.raises(grpc.aio.AioRpcError) as delete:
                await other.Delete(gateway_pb2.DeleteRequest(kind="worker", id="w", secret=bad))
            assert delete.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listed = await other.List(gateway_pb2.ListRequest(kind="worker"))
        assert [r.payload for r in listed.records] == [payload("mine")]
        assert all(r.owner_secret_sha256 == b"" for r in listed.records)
        again = await reg.Put(gateway_pb2.PutRequest(record=_record("worker", "w", "mine 2"), secret=made.secret))
        assert again.secret == "" and again.record.version == 2
        await reg.Delete(gateway_pb2.DeleteRequest(kind="worker", id="w", secret=made.secret))


async def test_an_oversized_record_is_refused_and_list_pages_through_the_rest(gateway_of) -> None:  # type: ignore[no-untyped-def]
    service = gateway_of(GatewayLimits(max_record_bytes=1024 * 1024))
    await service.start()
    try:
        async with open_channel(service.address) as channel:
            reg = gateway_pb2_grpc.RegistryServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as big:
                await reg.Put(gateway_pb2.PutRequest(record=_record("blob", "x", "x" * (1024 * 1024))))
            assert big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_reason(big.value) == "RECORD_TOO_LARGE"
            assert error_metadata(big.value)["limit"] == str(1024 * 1024)
            # 12 records just under 1 MiB: 12 MiB in all, more than one message may carry
            watch = reg.Watch(gateway_pb2.WatchRequest(kind="blob"))
            await watch.initial_metadata()
            for i in range(12):
                await reg.Put(gateway_pb2.PutRequest(record=_record("blob", f"{i:02d}", "x" * 1_000_000)), timeout=10)
            pages, ids, token = 0, [], ""
            while True:
                reply = await reg.List(gateway_pb2.ListRequest(kind="blob", page_token=token), timeout=10)
                pages += 1
                ids += [r.id for r in reply.records]
                token = reply.next_page_token
                if not token:
                    break
            assert ids == [f"{i:02d}" for i in range(12)] and pages >= 2
            assert [r.id for r in await list_records(reg, "blob", timeout=10)] == ids
            # a watch started now gets all twelve, one per message
            late = reg.Watch(gateway_pb2.WatchRequest(kind="blob"))
            seen = [(await asyncio.wait_for(late.read(), 10)).record.id for _ in range(12)]
            assert seen == ids
            late.cancel()
            watch.cancel()
            with pytest.raises(grpc.aio.AioRpcError) as bad_token:
                await reg.List(gateway_pb2.ListRequest(kind="blob", page_token="nope"))
            assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_reason(bad_token.value) == "PAGE_TOKEN_INVALID"
    finally:
        await service.stop()


async def test_rate_limits_answer_resource_exhausted_with_a_retry_delay() -> None:
    # NOTE: slow rates, so a stalled test machine never refills a token between the calls; the
    # limiter's own test (fake clock) shows that the delay it names lets the next call through.
    limits = GatewayLimits(put=Rate(rate=0.5, burst=2.0), publish=Rate(rate=0.5, burst=3.0))
    service = GatewayService("127.0.0.1:0", config_key="test.listen", limits=limits)
    await service.start()
    try:
        async with (
            open_channel(service.address, peer_id="busy") as busy,
            open_channel(service.address, peer_id="calm") as calm,
        ):
            reg = gateway_pb2_grpc.RegistryServiceStub(busy)
            secret = (await reg.Put(gateway_pb2.PutRequest(record=_record("k", "a")))).secret
            await reg.Put(gateway_pb2.PutRequest(record=_record("k", "a"), secret=secret))
            with pytest.raises(grpc.aio.AioRpcError) as put:
                await reg.Put(gateway_pb2.PutRequest(record=_record("k", "a"), secret=secret))
            assert put.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error_reason(put.value) == "RATE_LIMITED"
            delay = error_retry_delay(put.value)
            assert delay is not None and 0 < delay <= 2.0
            # another caller is not held back
            await gateway_pb2_grpc.RegistryServiceStub(calm).Put(gateway_pb2.PutRequest(record=_record("k", "b")))
            bus = gateway_pb2_grpc.BusServiceStub(busy)
            for _ in range(3):
                await bus.Publish(gateway_pb2.PublishRequest(topic="t", payload=payload("m")))
            with pytest.raises(grpc.aio.AioRpcError) as publish:
                await bus.Publish(gateway_pb2.PublishRequest(topic="t", payload=payload("m")))
            assert publish.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error_reason(publish.value) == "RATE_LIMITED" and error_retry_delay(publish.value)
    finally:
        await service.stop()


async def test_the_announcer_keeps_its_secret_and_claims_its_record_again_after_it_is_gone(
    gateway: GatewayService,
) -> None:
    owner = RegistryAnnouncer(
        gateway.address, "worker", "w", wrappers_pb2.StringValue(value="a"), ttl_seconds=60, peer_id="w"
    )
    rival = RegistryAnnouncer(
        gateway.address, "worker", "w", wrappers_pb2.StringValue(value="evil"), ttl_seconds=60, peer_id="x"
    )
    await owner.start()
    await rival.start()
    try:
        first = owner.secret
        assert owner.puts_ok == 1 and len(first) >= 43
        assert rival.puts_ok == 0 and rival.secret == ""  # refused: the id is taken
        assert await owner.put_once() and owner.secret == first  # a refresh keeps the secret
        await gateway.registry.delete("worker", "w")  # as if its TTL ran out or the gateway restarted
        assert await owner.put_once() and owner.secret not in ("", first)
        assert (await gateway.registry.get("worker", "w")).payload == payload("a")
        await rival._delete()  # a Delete without the secret leaves the record alone
        assert (await gateway.registry.get("worker", "w")).version == 1
    finally:
        await rival.stop()
        await owner.stop()
    with pytest.raises(GatewayError):  # the owner's clean stop deleted it
        await gateway.registry.get("worker", "w")


async def test_a_restarted_announcer_refreshes_its_record_with_the_secret_it_saved(
    gateway: GatewayService, tmp_path: Path
) -> None:
    secret_file = tmp_path / "registry-secret"
    value = wrappers_pb2.StringValue(value="a")
    crashed = RegistryAnnouncer(
        gateway.address, "worker", "w", value, ttl_seconds=60, peer_id="w", secret_file=secret_file
    )
    await crashed.start()
    assert secret_file.read_text() == crashed.secret and secret_file.stat().st_mode & 0o777 == 0o600
    # the process died without deleting its record; the next one starts from the file
    again = RegistryAnnouncer(
        gateway.address, "worker", "w", value, ttl_seconds=60, peer_id="w", secret_file=secret_file
    )
    await again.start()
    try:
        assert again.puts_ok == 1 and again.secret == crashed.secret
        assert (await gateway.registry.get("worker", "w")).version == 2
    finally:
        await again.stop()
        if crashed._task is not None:
            crashed._task.cancel()
        await crashed.gateways.close()


async def test_the_scheduler_finds_its_data_node_past_the_first_page(gateway: GatewayService) -> None:
    """A data set listed after the first List page (100 records) is still found."""
    for i in range(DEFAULT_PAGE_SIZE + 20):
        info = data_pb2.DatasetRecord(dataset_id=f"ds-{i:04d}", address=f"127.0.0.1:{10000 + i}")
        await gateway.registry.put("dataset", info.dataset_id, _packed(info), 60)
    # the gateway in use first is down: the pages come from the live one
    gateways = Gateways([f"127.0.0.1:{free_port()}", gateway.address])
    try:
        fake = SimpleNamespace(
            gateways=gateways,
            config=SimpleNamespace(data=SimpleNamespace(dataset_id=f"ds-{DEFAULT_PAGE_SIZE + 10:04d}")),
        )
        assert await Driver._find_data_node(fake) == f"127.0.0.1:{10000 + DEFAULT_PAGE_SIZE + 10}"  # type: ignore[arg-type]
    finally:
        await gateways.close()


def _packed(message: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out
