"""Several gateways over one Redis are one network; a Redis that goes away is UNAVAILABLE, then back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2

from tendril.core.channel import open_channel
from tendril.gateway.service import GatewayService
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_sdk.errors import error_reason
from tests.redis_server import RedisServer, redis_server


def payload(text: str) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(wrappers_pb2.StringValue(value=text))
    return out


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


async def gateway(url: str) -> GatewayService:
    service = GatewayService("127.0.0.1:0", config_key="test.listen", backend="redis", redis_url=url)
    await service.start()
    return service


async def test_two_gateways_over_one_redis_are_one_network(redis: RedisServer) -> None:
    a, b = await gateway(redis.url), await gateway(redis.url)
    try:
        async with open_channel(a.address, peer_id="worker-a") as on_a, open_channel(b.address) as on_b:
            watch = gateway_pb2_grpc.RegistryServiceStub(on_b).Watch(gateway_pb2.WatchRequest(kind="worker"))
            await watch.initial_metadata()
            sub = gateway_pb2_grpc.BusServiceStub(on_b).Subscribe(gateway_pb2.SubscribeRequest(topic="tendril/worker"))
            await sub.initial_metadata()
            record = gateway_pb2.Record(kind="worker", id="worker-a", payload=payload("a"), ttl_seconds=30)
            await gateway_pb2_grpc.RegistryServiceStub(on_a).Put(gateway_pb2.PutRequest(record=record))
            listed = await gateway_pb2_grpc.RegistryServiceStub(on_b).List(gateway_pb2.ListRequest(kind="worker"))
            assert [(r.id, r.payload, r.version) for r in listed.records] == [("worker-a", payload("a"), 1)]
            event = await asyncio.wait_for(watch.read(), 5)
            assert event.type == gateway_pb2.RECORD_EVENT_TYPE_PUT and event.record.id == "worker-a"
            reply = await gateway_pb2_grpc.BusServiceStub(on_a).Publish(
                gateway_pb2.PublishRequest(topic="tendril/worker", payload=payload("request"))
            )
            assert reply.delivered == 1  # the subscriber on gateway B
            message = await asyncio.wait_for(sub.read(), 5)
            assert message.envelope.payload == payload("request") and message.envelope.sender == "worker-a"
            watch.cancel()
            sub.cancel()
    finally:
        await a.stop()
        await b.stop()


async def test_redis_down_is_unavailable_and_the_gateway_reconnects(redis: RedisServer) -> None:
    gw = await gateway(redis.url)
    try:
        async with open_channel(gw.address) as channel:
            reg = gateway_pb2_grpc.RegistryServiceStub(channel)
            bus = gateway_pb2_grpc.BusServiceStub(channel)
            sub = bus.Subscribe(gateway_pb2.SubscribeRequest(topic="t"))
            await sub.initial_metadata()
            watch = reg.Watch(gateway_pb2.WatchRequest())
            await watch.initial_metadata()
            redis.stop()
            with pytest.raises(grpc.aio.AioRpcError) as down:
                await reg.List(gateway_pb2.ListRequest(), timeout=10)
            assert down.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_reason(down.value) == "BACKEND_UNAVAILABLE"
            assert f"127.0.0.1:{redis.port}" in (down.value.details() or "")
            # the open stream ends with the same reason, so its client re-subscribes (elsewhere)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(sub.read(), 10)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_reason(ended.value) == "BACKEND_UNAVAILABLE"
            with pytest.raises(grpc.aio.AioRpcError) as watch_ended:
                await asyncio.wait_for(watch.read(), 10)
            assert error_reason(watch_ended.value) == "BACKEND_UNAVAILABLE"
            redis.start()  # same port, empty
            record = gateway_pb2.Record(kind="worker", id="w", ttl_seconds=30)
            for _ in range(100):
                try:
                    await reg.Put(gateway_pb2.PutRequest(record=record), timeout=5)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    await asyncio.sleep(0.1)
            assert [r.id for r in (await reg.List(gateway_pb2.ListRequest())).records] == ["w"]
            again = bus.Subscribe(gateway_pb2.SubscribeRequest(topic="t"))
            for _ in range(100):  # the bus reconnects in the background
                try:
                    await again.initial_metadata()
                    if not again.done():
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
                again = bus.Subscribe(gateway_pb2.SubscribeRequest(topic="t"))
            assert (await bus.Publish(gateway_pb2.PublishRequest(topic="t", payload=payload("x")))).delivered == 1
            assert (await asyncio.wait_for(again.read(), 5)).envelope.payload == payload("x")
            again.cancel()
    finally:
        await gw.stop()


async def test_the_embedded_gateway_takes_its_backend_from_the_config(redis: RedisServer, tmp_path: Path) -> None:
    from tendril.gateway.service import build
    from tests.procs import worker_config

    config = worker_config(tmp_path, gateway__backend="redis", gateway__redis_url=redis.url)
    embedded, other = build(config), await gateway(redis.url)
    await embedded.start()
    try:
        assert embedded.backend == "redis"
        record = gateway_pb2.Record(kind="worker", id="worker-test", ttl_seconds=30)
        async with open_channel(embedded.address) as channel:
            await gateway_pb2_grpc.RegistryServiceStub(channel).Put(gateway_pb2.PutRequest(record=record))
        assert [e.id for e in await other.registry.records("worker")] == ["worker-test"]
    finally:
        await embedded.stop()
        await other.stop()
