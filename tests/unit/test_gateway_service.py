"""The gateway over gRPC (in-process server): bus streams, registry TTL/Watch, status codes."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2

from tendril.core.channel import open_channel
from tendril.gateway.service import GatewayService
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_sdk.errors import error_reason
from tests.redis_server import redis_url  # noqa: F401  (fixture)


def payload(text: str) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(wrappers_pb2.StringValue(value=text))
    return out


@pytest.fixture(params=["memory", "redis"])
async def gateway(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    service = GatewayService(
        "127.0.0.1:0",
        config_key="test.listen",
        queue_size=16,
        backend=request.param,
        redis_url=url,
        redis_prefix=f"{request.node.name}:",
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


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
        await reg.Put(gateway_pb2.PutRequest(record=gateway_pb2.Record(kind="dataset", id="d", ttl_seconds=30)))
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
        await reg.Delete(gateway_pb2.DeleteRequest(kind="dataset", id="d"))
        with pytest.raises(grpc.aio.AioRpcError) as deleted:
            await reg.Delete(gateway_pb2.DeleteRequest(kind="dataset", id="d"))
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
