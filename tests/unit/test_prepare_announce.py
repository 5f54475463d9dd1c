"""Announcing a data set in the registry: refresh before the TTL, delete on stop, gateway down."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from tendril.core.announce import RegistryAnnouncer
from tendril.core.channel import open_channel
from tendril.core.ports import free_port
from tendril.gateway.service import GatewayService
from tendril_proto.data.v1 import data_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc


async def test_record_is_refreshed_and_deleted_on_stop() -> None:
    gateway = GatewayService("127.0.0.1:0", config_key="test.gateway")
    await gateway.start()
    try:
        record = data_pb2.DatasetRecord(dataset_id="ds", address="127.0.0.1:1")
        announcer = RegistryAnnouncer(gateway.address, "dataset", "ds", record, ttl_seconds=0.6, peer_id="node")
        await announcer.start()
        async with open_channel(gateway.address, peer_id="tester") as channel:
            registry = gateway_pb2_grpc.RegistryServiceStub(channel)
            deadline = time.monotonic() + 10
            while True:  # outlives two TTLs only if refreshed
                got = (await registry.Get(gateway_pb2.GetRequest(kind="dataset", id="ds"))).record
                if got.version >= 4:
                    break
                assert time.monotonic() < deadline, f"not refreshed: version {got.version}"
                await asyncio.sleep(0.05)
            payload = data_pb2.DatasetRecord()
            assert got.payload.Unpack(payload) and payload == record
            await announcer.stop()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await registry.Get(gateway_pb2.GetRequest(kind="dataset", id="ds"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await gateway.stop()


async def test_gateway_down_never_stops_the_service() -> None:
    record = data_pb2.DatasetRecord(dataset_id="ds")
    announcer = RegistryAnnouncer(f"127.0.0.1:{free_port()}", "dataset", "ds", record, ttl_seconds=30, peer_id="n")
    await announcer.start()
    assert announcer.puts_ok == 0
    await announcer.stop()


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RegistryAnnouncer("127.0.0.1:1", "dataset", "ds", data_pb2.DatasetRecord(), ttl_seconds=0, peer_id="n")


async def test_a_withdrawn_record_leaves_the_registry_and_comes_back_on_resume() -> None:
    gateway = GatewayService("127.0.0.1:0", config_key="test.gateway")
    await gateway.start()
    try:
        record = data_pb2.DatasetRecord(dataset_id="ds", address="127.0.0.1:1")
        announcer = RegistryAnnouncer(gateway.address, "worker", "w", record, ttl_seconds=0.3, peer_id="w")
        await announcer.start()
        async with open_channel(gateway.address, peer_id="tester") as channel:
            registry = gateway_pb2_grpc.RegistryServiceStub(channel)
            assert announcer.registered
            await announcer.withdraw("test")
            assert not announcer.registered
            await asyncio.sleep(0.5)  # more than a refresh period: no refresh puts it back
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await registry.Get(gateway_pb2.GetRequest(kind="worker", id="w"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            await announcer.resume()
            assert announcer.registered
            await registry.Get(gateway_pb2.GetRequest(kind="worker", id="w"))
        await announcer.stop()
    finally:
        await gateway.stop()
