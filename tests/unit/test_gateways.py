"""Failover between gateways (tendril.core.gateways), as the announcer and the arbiter's bus follower use it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2

from tendril.arbiter.bus import BusFollower
from tendril.core.announce import RegistryAnnouncer
from tendril.core.gateways import Gateways, parse_addresses
from tendril.core.ports import free_port
from tendril.gateway.service import GatewayService
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc


async def started() -> GatewayService:
    service = GatewayService("127.0.0.1:0", config_key="test.listen")
    await service.start()
    return service


def test_addresses_are_a_comma_separated_list() -> None:
    assert parse_addresses(" a:1, b:2,,a:1 ") == ["a:1", "b:2"]
    assert parse_addresses(["b:2", "a:1"]) == ["b:2", "a:1"]
    with pytest.raises(ValueError):
        Gateways("")


async def test_a_call_moves_to_the_next_gateway_and_stays_there() -> None:
    dead = f"127.0.0.1:{free_port()}"
    live = await started()
    gateways = Gateways([dead, live.address], peer_id="p")
    try:

        def list_workers(channel: grpc.aio.Channel) -> object:
            return gateway_pb2_grpc.RegistryServiceStub(channel).List(gateway_pb2.ListRequest(), timeout=5)

        await gateways.call(list_workers)
        assert gateways.current == live.address and gateways.moves == 1
        await gateways.call(list_workers)
        assert gateways.moves == 1  # no flapping back
        with pytest.raises(grpc.aio.AioRpcError) as bad:  # not a gateway failure: no move
            await gateways.call(
                lambda channel: gateway_pb2_grpc.RegistryServiceStub(channel).Get(gateway_pb2.GetRequest(), timeout=5)
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and gateways.moves == 1
        await live.stop()
        with pytest.raises(grpc.aio.AioRpcError) as down:  # every gateway tried once, the last error raised
            await gateways.call(list_workers)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await gateways.close()
        await live.stop()


async def test_announcer_registers_on_the_next_gateway_when_its_own_dies() -> None:
    a, b = await started(), await started()
    announcer = RegistryAnnouncer(
        f"{a.address},{b.address}", "worker", "w1", wrappers_pb2.StringValue(value="x"), ttl_seconds=30, peer_id="w1"
    )
    try:
        await announcer.start()
        assert [e.id for e in await a.registry.records()] == ["w1"] and announcer.gateway_address == a.address
        await a.stop()
        assert await announcer.put_once()  # the next refresh
        assert [e.id for e in await b.registry.records()] == ["w1"] and announcer.gateway_address == b.address
    finally:
        await announcer.stop()
        await b.stop()


async def test_bus_follower_resubscribes_on_the_next_gateway() -> None:
    a, b = await started(), await started()
    got: list[str] = []
    follower = BusFollower(
        [a.address, b.address],
        "tendril/worker",
        peer_id="w1",
        on_request=lambda r: got.append(r.request_id),
        backoff_initial=0.01,
        backoff_max=0.05,
    )
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.subscribed.wait(), 5)
        assert follower.address == a.address
        await a.stop()
        for _ in range(500):
            if follower.address == b.address and follower.subscribed.is_set():
                break
            await asyncio.sleep(0.01)
        assert follower.address == b.address and follower.subscribed.is_set()
        payload = any_pb2.Any()
        payload.Pack(arbiter_pb2.ResourceRequest(request_id="r-on-b"))
        await b.bus.publish("tendril/worker", gateway_pb2.Envelope(topic="tendril/worker", payload=payload))
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == ["r-on-b"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await b.stop()


def test_gateway_lists_and_backend_in_the_configs(capsys: pytest.CaptureFixture[str]) -> None:
    from tendril.cli.main import run
    from tendril.core.config import load_config
    from tendril.core.errors import ConfigError
    from tendril.scheduler.jobconfig import SchedulerSection

    config = load_config(None, env={}, overrides={"gateway.address": " gw1:50050, gw2:50050 "})
    assert config.gateway.address == "gw1:50050,gw2:50050" and config.gateway.backend == "memory"
    assert load_config(None, env={}, overrides={"gateway.address": "gw1:50050"}).gateway.address == "gw1:50050"
    bad_values = (("gateway.address", "gw1:50050,nonsense"), ("gateway.backend", "etcd"), ("gateway.redis_url", "x"))
    for key, bad in bad_values:
        with pytest.raises(ConfigError) as err:
            load_config(None, env={}, overrides={key: bad})
        assert key in str(err.value)
    assert SchedulerSection(gateway="a:1,b:2").gateway == "a:1,b:2"
    assert run(["gateway", "run", "--backend", "redis", "--redis-url", "localhost:6379"]) == 2
    assert "--redis-url" in capsys.readouterr().err
