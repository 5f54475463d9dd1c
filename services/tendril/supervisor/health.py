"""Wait until a service reports grpc.health.v1 SERVING (or its process exits, or time runs out)."""

from __future__ import annotations

import asyncio
import enum
import time

from tendril.core.health import check_serving
from tendril.supervisor.child import Child

POLL_SECONDS = 0.05


class Started(enum.Enum):
    SERVING = "serving"
    EXITED = "exited"
    TIMEOUT = "timeout"
    STOPPING = "stopping"


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
