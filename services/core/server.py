"""The one server factory every Tendril service is built with.

It gives each server: grpc.aio, grpc.health.v1 (overall "" and per service), reflection,
rich error statuses, call logging, ``grpc.so_reuseport=0`` (so two processes can never
silently share a port), bounded message sizes, and a graceful stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tendril.services.core.errors import PortInUseError
from tendril.services.core.interceptors import ErrorInterceptor, LoggingInterceptor
from tendril.services.core.logs import get_logger

log = get_logger("tendril.server")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


@dataclasses.dataclass(frozen=True)
class Binding:
    """One gRPC service to serve: its full name, the generated add-function and the servicer."""

    name: str
    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


class ServiceServer:
    """A started-or-not gRPC server for one or more services on one address."""

    def __init__(
        self,
        listen: str,
        bindings: Sequence[Binding],
        *,
        config_key: str,
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.listen = listen
        self.config_key = config_key
        self.bindings = list(bindings)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._credentials = credentials
        self._server = grpc.aio.server(
            interceptors=[LoggingInterceptor(), ErrorInterceptor(), *interceptors], options=SERVER_OPTIONS
        )
        for binding in self.bindings:
            binding.add(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [b.name for b in self.bindings] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self._server)
        self.port = 0

    async def start(self) -> None:
        """Bind and start; raises PortInUseError naming the config key when the port is taken."""
        try:
            if self._credentials is not None:
                self.port = self._server.add_secure_port(self.listen, self._credentials)
            else:
                self.port = self._server.add_insecure_port(self.listen)
        except RuntimeError as exc:
            raise PortInUseError(self.listen, self.config_key) from exc
        if not self.port:
            raise PortInUseError(self.listen, self.config_key)
        await self._server.start()
        for binding in self.bindings:
            await self._set(binding.name, serving=True)
        await self._set("", serving=True)
        log.info("server.started", address=self.address, services=[b.name for b in self.bindings])

    @property
    def address(self) -> str:
        if self.listen.startswith("unix:"):
            return self.listen  # a Unix socket has no port to fill in
        host = self.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def _set(self, name: str, *, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        result = self.health.set(name, status)
        if asyncio.iscoroutine(result):
            await result

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, let calls in flight finish for ``grace`` seconds, then stop."""
        for binding in self.bindings:
            await self._set(binding.name, serving=False)
        await self._set("", serving=False)
        await self._server.stop(grace)

    async def wait(self) -> None:
        await self._server.wait_for_termination()


async def run_until_signal(
    start: Callable[[], Awaitable[Any]],
    stop: Callable[[], Awaitable[Any]],
) -> None:
    """Run ``start``, then wait for SIGTERM/SIGINT and run ``stop`` (the graceful stop)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    await stopping.wait()
    log.info("process.stopping")
    await stop()
