"""Wiring of the gateway: bus + registry cores, servicers, one ServiceServer, the TTL sweeper.

Two ways to run it:

* embedded (the supervisor): ``python -m tendril.gateway --config-json FILE`` —
  :func:`build` serves on ``gateway.embedded_listen``;
* standalone (its own host): ``tendril gateway run --listen ADDR`` calls
  :func:`run_gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from tendril.core import liveness, tracing
from tendril.core.config import WorkerConfig
from tendril.core.errors import PortInUseError, TendrilError
from tendril.core.logs import configure, get_logger
from tendril.core.server import MAX_MESSAGE_BYTES, Binding, ServiceServer, run_until_signal
from tendril.gateway.bus import DEFAULT_QUEUE_SIZE, TopicBus
from tendril.gateway.limits import GatewayLimits, Rate, RateLimiter
from tendril.gateway.registry import MAX_SWEEP_SLEEP, Registry, max_page_size
from tendril.gateway.servicer import BusServicer, RegistryServicer
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

log = get_logger("tendril.gateway")

BUS_SERVICE = "tendril.gateway.v1.BusService"
REGISTRY_SERVICE = "tendril.gateway.v1.RegistryService"


class GatewayService:
    """A running-or-not gateway on ``listen``."""

    def __init__(
        self,
        listen: str,
        *,
        config_key: str,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        limits: GatewayLimits | None = None,
    ) -> None:
        limits = limits or GatewayLimits()
        self.limits = limits
        self.bus: TopicBus[gateway_pb2.Envelope] = TopicBus(queue_size=queue_size)
        self.registry = Registry(
            max_record_bytes=limits.max_record_bytes,
            max_page=max_page_size(limits.max_record_bytes, MAX_MESSAGE_BYTES),
        )
        self.put_limiter = RateLimiter("Put", limits.put)
        self.publish_limiter = RateLimiter("Publish", limits.publish)
        self.server = ServiceServer(
            listen,
            [
                Binding(
                    BUS_SERVICE,
                    gateway_pb2_grpc.add_BusServiceServicer_to_server,
                    BusServicer(self.bus, limiter=self.publish_limiter),
                ),
                Binding(
                    REGISTRY_SERVICE,
                    gateway_pb2_grpc.add_RegistryServiceServicer_to_server,
                    RegistryServicer(self.registry, limiter=self.put_limiter),
                ),
            ],
            config_key=config_key,
        )
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        await self.server.start()
        self._sweeper = liveness.supervised(self.registry.run_sweeper(), name="registry-sweeper", every=MAX_SWEEP_SLEEP)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        # NOTE: ending the subscriptions first lets open Subscribe/Watch streams finish, so the
        # graceful stop does not sit out its grace period waiting for them.
        self.bus.close()
        self.registry.close()
        await self.server.stop()
        log.info(
            "gateway.stopped",
            published=self.bus.published,
            dropped=self.bus.dropped,
            registry_writes=self.registry.writes,
            refused_puts=self.put_limiter.refused,
            refused_publishes=self.publish_limiter.refused,
        )


def limits_of(config: WorkerConfig) -> GatewayLimits:
    section = config.gateway
    return GatewayLimits(
        max_record_bytes=section.max_record_bytes,
        put=Rate(section.put_rate, section.put_burst),
        publish=Rate(section.publish_rate, section.publish_burst),
    )


def build(config: WorkerConfig) -> GatewayService:
    """The worker's embedded gateway, on ``gateway.embedded_listen``."""
    return GatewayService(
        config.gateway.embedded_listen, config_key="gateway.embedded_listen", limits=limits_of(config)
    )


def run_gateway(
    listen: str, *, log_level: str = "info", log_format: str = "auto", limits: GatewayLimits | None = None
) -> None:
    """Run a standalone gateway on ``listen`` ("host:port") until SIGTERM/SIGINT.

    This is what ``tendril gateway run --listen ADDR`` calls. It blocks; it configures
    logging itself. When the gateway cannot start (e.g. the port is taken) it prints the
    reason and exits with status 3, like every service process.
    """
    configure("gateway", level=log_level, fmt=log_format)
    tracing.setup("gateway")

    async def main() -> None:
        # NOTE: built inside the loop: grpc.aio servers belong to the loop that creates them.
        service = GatewayService(listen, config_key="--listen", limits=limits)
        await run_until_signal(service.start, service.stop)

    try:
        asyncio.run(main())
    except TendrilError as exc:
        message = exc.message
        if isinstance(exc, PortInUseError):
            # the generic message names config keys; a standalone gateway has only --listen
            message = (
                f"cannot listen on {listen}: the port is already in use. "
                "Stop the other process or pass another --listen."
            )
        log.error("service.failed", error=message, reason=exc.reason)
        print(f"tendril gateway: {message}", file=sys.stderr)
        sys.exit(3)
