"""A child's health: wait until it is SERVING at start, then keep asking whether it is alive.

Start: :func:`wait_started` polls grpc.health.v1 (the overall "" name) until SERVING, the
process exits, or time runs out.

While it serves: a :class:`LivenessProbe` asks the child for
:data:`~tendril.core.liveness.HEALTH_NAME` every :data:`PROBE_INTERVAL_SECONDS` on one channel,
each call with a :data:`PROBE_TIMEOUT_SECONDS` deadline. Its :meth:`~LivenessProbe.verdict`
condemns a child that answered NOT_SERVING (one of its loops stalled: the process says it is
not whole) or that has answered nothing for ``supervisor.unresponsive_seconds`` (a stopped or
hung process, an event loop blocked that long). Health checks are answered on the child's
event loop, so the limit is also the longest a service may keep its loop busy.

A probe given ``ready_name`` (the JobService's own name) also asks for that name after each
SERVING liveness answer: :attr:`LivenessProbe.ready` says whether the service can do its work
now (the JobService: whether its disk and database take jobs). Not being ready is no reason to
kill it; the supervisor withdraws the worker's registry record meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core.channel import open_channel
from tendril.core.health import check_serving
from tendril.core.liveness import HEALTH_NAME
from tendril.core.logs import get_logger
from tendril.supervisor.child import Child

log = get_logger("tendril.supervisor")

POLL_SECONDS = 0.05
PROBE_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 4.0  # at most supervisor.unresponsive_seconds, see LivenessProbe


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


class LivenessProbe:
    """Keeps asking one serving child whether it is alive; :meth:`verdict` says when to kill it."""

    def __init__(
        self,
        address: str,
        *,
        peer_id: str,
        unresponsive_seconds: float,
        interval: float = PROBE_INTERVAL_SECONDS,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        ready_name: str = "",
    ) -> None:
        self.address = address
        self.ready_name = ready_name
        self.ready = True  # the last answer under ready_name (True until one says otherwise)
        self.peer_id = peer_id
        self.unresponsive_seconds = unresponsive_seconds
        self.interval = interval
        # NOTE: a call may take up to the whole limit less one interval: a child that answers
        # slowly but answers keeps its last_alive fresher than the limit.
        self.timeout = max(0.1, min(timeout, unresponsive_seconds - interval))
        self.clock = clock
        self.last_alive = clock()  # it has just reported SERVING (wait_started)
        self.last_answer = "SERVING"
        self.not_serving = False
        self.probes = 0

    def answered(self, status: int | None, code: grpc.StatusCode | None = None) -> None:
        """Record one probe's outcome: a health status, or the status code of a failed call."""
        self.probes += 1
        if code is None:
            self.not_serving = status != health_pb2.HealthCheckResponse.SERVING
            self.last_answer = health_pb2.HealthCheckResponse.ServingStatus.Name(status or 0)
            if not self.not_serving:
                self.last_alive = self.clock()
        elif code == grpc.StatusCode.NOT_FOUND:
            # a server without the liveness name (not built on ServiceServer) answered: it runs
            self.last_alive = self.clock()
            self.last_answer = "SERVING"
        else:
            self.last_answer = code.name

    def verdict(self, now: float | None = None) -> str | None:
        """Why the child must be killed and restarted now, or None while it is alive."""
        if self.not_serving:
            return f"reported {self.last_answer} on {HEALTH_NAME} (a loop in it stalled; see its log)"
        silent = (self.clock() if now is None else now) - self.last_alive
        if silent > self.unresponsive_seconds:
            return f"answered no health check for {silent:.1f}s (last: {self.last_answer})"
        return None

    async def run(self) -> None:
        """Probe until cancelled."""
        async with open_channel(self.address, peer_id=self.peer_id) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=HEALTH_NAME)
            while True:
                started = self.clock()
                try:
                    reply = await stub.Check(request, timeout=self.timeout)
                    self.answered(reply.status)
                    if self.ready_name and reply.status == health_pb2.HealthCheckResponse.SERVING:
                        ready = await stub.Check(
                            health_pb2.HealthCheckRequest(service=self.ready_name), timeout=self.timeout
                        )
                        self.ready = ready.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.aio.AioRpcError as exc:
                    self.answered(None, exc.code())
                except Exception as exc:  # no answer either; the probe itself goes on
                    log.warning("probe.failed", address=self.address, error=repr(exc))
                    self.answered(None, grpc.StatusCode.UNKNOWN)
                await asyncio.sleep(max(0.0, self.interval - (self.clock() - started)))
