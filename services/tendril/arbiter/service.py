"""Wiring of the Arbiter process: engine + gRPC ports + bus follower + ArbiterService server."""

from __future__ import annotations

import asyncio
import contextlib

from tendril.arbiter.bus import BusFollower
from tendril.arbiter.clients import JobsHealth, LeaseClient, SchedulerClient
from tendril.arbiter.convert import request_from_proto
from tendril.arbiter.engine import Arbiter
from tendril.arbiter.policy import Policy
from tendril.arbiter.servicer import ArbiterServicer
from tendril.core import liveness, tls
from tendril.core.config import WorkerConfig
from tendril.core.logs import get_logger
from tendril.core.server import Binding, ServiceServer
from tendril_proto.arbiter.v1 import arbiter_pb2, arbiter_pb2_grpc

log = get_logger("tendril.arbiter")

SERVICE_NAME = "tendril.arbiter.v1.ArbiterService"
# How long offers that are out when the arbiter stops may take to finish (they are bounded
# by the offer timeout anyway).
STOP_GRACE_SECONDS = 2.0
# The decision loop's own work between two of its waits (scoring one window: milliseconds).
DECISION_STEP_SECONDS = 1.0


def gateway_address(config: WorkerConfig) -> str:
    """The gateway the worker joined: gateway.address, or the embedded one."""
    return config.gateway.address or config.gateway.embedded_listen


class ArbiterService:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.arbiter: Arbiter | None = None
        self.follower: BusFollower | None = None
        self.server: ServiceServer | None = None
        self._leases: LeaseClient | None = None
        self._schedulers: SchedulerClient | None = None
        self._jobs: JobsHealth | None = None
        self._windows: asyncio.Task[None] | None = None
        self._bus: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        assert self.server is not None, "start() first"
        return self.server.address

    async def start(self) -> None:
        config = self.config
        self._leases = LeaseClient(config.listen("lease"), worker_id=config.worker_id)
        self._schedulers = SchedulerClient(config)
        self._jobs = JobsHealth(config.listen("job"), worker_id=config.worker_id)
        self.arbiter = Arbiter(
            Policy.from_config(config),
            self._leases,
            self._schedulers,
            window_size=config.arbiter.window_size,
            window_seconds=config.arbiter.window_seconds,
            offer_timeout_seconds=config.arbiter.offer_timeout_seconds,
            jobs=self._jobs,
        )
        self.follower = BusFollower(
            gateway_address(config),
            config.arbiter.topic,
            peer_id=config.worker_id,
            on_request=self._from_bus,
            verify_sender=tls.active() is not None,
        )
        self.server = ServiceServer(
            config.listen("arbiter"),
            [
                Binding(
                    SERVICE_NAME, arbiter_pb2_grpc.add_ArbiterServiceServicer_to_server, ArbiterServicer(self.arbiter)
                )
            ],
            config_key="arbiter.listen",
        )
        await self.server.start()
        # NOTE: the decision loop beats between its waits (requests, LeaseService calls); the
        # bus follower waits on the gateway (watched for death only).
        self._windows = liveness.supervised(self.arbiter.run(), name="arbiter-decisions", every=DECISION_STEP_SECONDS)
        self._bus = liveness.supervised(self.follower.run(), name="arbiter-bus")
        log.info(
            "arbiter.started",
            gateway=gateway_address(config),
            topic=config.arbiter.topic,
            leases=config.listen("lease"),
            strategy=config.arbiter.strategy,
        )

    def _from_bus(self, message: arbiter_pb2.ResourceRequest) -> None:
        assert self.arbiter is not None
        self.arbiter.submit(request_from_proto(message), source="bus")

    async def stop(self) -> None:
        # Order: no new requests from the bus; waiting requests dropped and offers out given a
        # short grace; then the server (Solicit calls have their answers by now).
        await _cancel(self._bus)
        if self.arbiter is not None:
            await self.arbiter.stop(STOP_GRACE_SECONDS)
        await _cancel(self._windows)
        if self.server is not None:
            await self.server.stop()
        if self._schedulers is not None:
            await self._schedulers.close()
        if self._leases is not None:
            await self._leases.close()
        if self._jobs is not None:
            await self._jobs.close()


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build(config: WorkerConfig) -> ArbiterService:
    return ArbiterService(config)
