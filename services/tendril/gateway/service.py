"""Wiring of the gateway: bus + registry stores (memory or Redis), servicers, one ServiceServer, the TTL sweeper.

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
from collections.abc import Awaitable, Callable

from tendril.core import liveness, tracing
from tendril.core.config import WorkerConfig
from tendril.core.errors import PortInUseError, TendrilError
from tendril.core.logs import configure, get_logger
from tendril.core.server import MAX_MESSAGE_BYTES, Binding, ServiceServer, run_until_signal
from tendril.gateway.bus import DEFAULT_QUEUE_SIZE
from tendril.gateway.limits import GatewayLimits, Rate, RateLimiter
from tendril.gateway.memory import MemoryBus, MemoryRegistry
from tendril.gateway.registry import DEFAULT_MAX_RECORD_BYTES, MAX_SWEEP_SLEEP, max_page_size
from tendril.gateway.servicer import BusServicer, RegistryServicer
from tendril.gateway.store import BusStore, RegistryStore
from tendril_proto.gateway.v1 import gateway_pb2_grpc

log = get_logger("tendril.gateway")

BUS_SERVICE = "tendril.gateway.v1.BusService"
REGISTRY_SERVICE = "tendril.gateway.v1.RegistryService"


BACKENDS = ("memory", "redis")


def stores(
    backend: str,
    *,
    redis_url: str = "",
    redis_prefix: str = "",
    queue_size: int = DEFAULT_QUEUE_SIZE,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> tuple[BusStore, RegistryStore, Callable[[], Awaitable[None]]]:
    """The bus and registry of ``backend`` and what releases what they share (a Redis client).

    Both registries take the same record size cap and the largest List page that fits the
    message limit at that cap.
    """
    max_page = max_page_size(max_record_bytes, MAX_MESSAGE_BYTES)
    if backend == "memory":

        async def nothing() -> None:
            pass

        registry = MemoryRegistry(max_record_bytes=max_record_bytes, max_page=max_page)
        return MemoryBus(queue_size=queue_size), registry, nothing
    if backend == "redis":
        # NOTE: imported here: a memory gateway never loads the Redis client.
        from tendril.gateway import redis_store

        client = redis_store.connect(redis_url)
        prefix = redis_prefix or redis_store.DEFAULT_PREFIX
        return (
            redis_store.RedisBus(client, url=redis_url, prefix=prefix, queue_size=queue_size),
            redis_store.RedisRegistry(
                client, url=redis_url, prefix=prefix, max_record_bytes=max_record_bytes, max_page=max_page
            ),
            client.aclose,
        )
    raise ValueError(f"gateway backend {backend!r}: use one of {', '.join(BACKENDS)}")


class GatewayService:
    """A running-or-not gateway on ``listen``, its state in ``backend`` ("memory" or "redis")."""

    def __init__(
        self,
        listen: str,
        *,
        config_key: str,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        backend: str = "memory",
        redis_url: str = "",
        redis_prefix: str = "",
        limits: GatewayLimits | None = None,
    ) -> None:
        limits = limits or GatewayLimits()
        self.limits = limits
        self.backend = backend
        self.bus, self.registry, self._release = stores(
            backend,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            queue_size=queue_size,
            max_record_bytes=limits.max_record_bytes,
        )
        # NOTE: rate limits are kept in this process whatever the backend: with several gateways
        # a caller's limit applies on each gateway it calls.
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
        # NOTE: a Redis that is down does not stop the gateway: it answers UNAVAILABLE
        # BACKEND_UNAVAILABLE and serves again once Redis is back.
        await self.bus.start()
        await self.registry.start()
        await self.server.start()
        self._sweeper = liveness.supervised(self.registry.run_sweeper(), name="registry-sweeper", every=MAX_SWEEP_SLEEP)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        # NOTE: ending the subscriptions first lets open Subscribe/Watch streams finish, so the
        # graceful stop does not sit out its grace period waiting for them.
        await self.bus.close()
        await self.registry.close()
        await self.server.stop()
        await self._release()
        log.info(
            "gateway.stopped",
            backend=self.backend,
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
    section = config.gateway
    return GatewayService(
        section.embedded_listen,
        config_key="gateway.embedded_listen",
        backend=section.backend,
        redis_url=section.redis_url,
        redis_prefix=section.redis_prefix,
        limits=limits_of(config),
    )


def run_gateway(
    listen: str,
    *,
    log_level: str = "info",
    log_format: str = "auto",
    backend: str = "memory",
    redis_url: str = "",
    redis_prefix: str = "",
    limits: GatewayLimits | None = None,
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
        service = GatewayService(
            listen,
            config_key="--listen",
            backend=backend,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            limits=limits,
        )
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
