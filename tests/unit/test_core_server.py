"""The server factory: health, reflection, rich errors, port conflicts, streaming errors."""

from __future__ import annotations

import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind, PortInUseError, TendrilError
from tendril.core.server import Binding, ServiceServer
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_sdk.errors import error_reason


class _DemoError(TendrilError):
    service = "demo"


class _Registry(gateway_pb2_grpc.RegistryServiceServicer):
    async def Get(self, request, context):
        if not request.id:
            raise _DemoError(ErrorKind.INVALID_ARGUMENT, "id is required", reason="ID_MISSING", metadata={"f": "id"})
        if request.id == "boom":
            raise RuntimeError("kaput")
        return gateway_pb2.GetResponse(record=gateway_pb2.Record(kind=request.kind, id=request.id))

    async def Watch(self, request, context):
        yield gateway_pb2.WatchResponse()
        raise _DemoError(ErrorKind.NOT_FOUND, "no such kind", reason="KIND_NOT_FOUND")


def _binding() -> Binding:
    return Binding(
        "tendril.gateway.v1.RegistryService",
        gateway_pb2_grpc.add_RegistryServiceServicer_to_server,
        _Registry(),
    )


async def test_health_errors_and_streams() -> None:
    server = ServiceServer("127.0.0.1:0", [_binding()], config_key="test.listen")
    await server.start()
    try:
        async with open_channel(server.address, peer_id="tester") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "tendril.gateway.v1.RegistryService"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = gateway_pb2_grpc.RegistryServiceStub(channel)
            ok = await stub.Get(gateway_pb2.GetRequest(kind="k", id="x"))
            assert ok.record.id == "x"
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.Get(gateway_pb2.GetRequest(kind="k"))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad.value.details() == "id is required"
            assert error_reason(bad.value) == "ID_MISSING"
            with pytest.raises(grpc.aio.AioRpcError) as internal:
                await stub.Get(gateway_pb2.GetRequest(kind="k", id="boom"))
            assert internal.value.code() == grpc.StatusCode.INTERNAL
            assert "kaput" in internal.value.details()
            call = stub.Watch(gateway_pb2.WatchRequest())
            got = []
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                async for item in call:
                    got.append(item)
            assert len(got) == 1
            assert streamed.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)


async def test_port_in_use_names_the_key() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        server = ServiceServer(f"127.0.0.1:{port}", [_binding()], config_key="job.listen")
        with pytest.raises(PortInUseError) as err:
            await server.start()
        assert "job.listen" in err.value.message and str(port) in err.value.message
    finally:
        sock.close()
