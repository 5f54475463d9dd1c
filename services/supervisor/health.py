"""Wait until a service reports grpc.health.v1 SERVING (or its process exits, or time runs out)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.services.core.channel import open_channel
from tendril.services.core.config import split_address
from tendril.services.supervisor.child import Child

POLL_SECONDS = 0.05
CHECK_TIMEOUT_SECONDS = 2.0


class Started(enum.Enum):
    SERVING = "serving"
    EXITED = "exited"
    TIMEOUT = "timeout"
    STOPPING = "stopping"


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


async def wait_started(child: Child, address: str, *, timeout: float, stopping: asyncio.Event, peer_id: str) -> Started:
    """Poll ``child`` until it serves at ``address``; stop early when it exits or on shutdown."""
    deadline = time.monotonic() + timeout
    while True:
        if stopping.is_set():
            return Started.STOPPING
        if child.poll() is not None:
            return Started.EXITED
        if await check_serving(address, peer_id=peer_id):
            return Started.SERVING
        if time.monotonic() >= deadline:
            return Started.TIMEOUT
        await asyncio.sleep(POLL_SECONDS)
