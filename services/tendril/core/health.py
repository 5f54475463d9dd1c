"""Is a service at an address serving? One grpc.health.v1 check, cheap when nothing listens."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core.channel import open_channel
from tendril.core.config import split_address

CHECK_TIMEOUT_SECONDS = 2.0


async def _accepts(address: str) -> bool:
    host, port = split_address(address)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def check_serving(address: str, *, peer_id: str) -> bool:
    """One health check of the overall service ("") at ``address``."""
    # NOTE: a port that refuses connections is checked with a plain connect first, and every
    # check uses a fresh channel: a channel that saw "connection refused" waits out gRPC's
    # reconnect backoff (≥ 1 s) before it tries again, which would slow every start.
    if not await _accepts(address):
        return False
    async with open_channel(address, peer_id=peer_id) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=CHECK_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
