"""The one server factory every Tendril service is built with.

It gives each server: grpc.aio, grpc.health.v1 (overall "" and per service), reflection,
rich error statuses, call logging, ``grpc.so_reuseport=0`` (so two processes can never
silently share a port), bounded message sizes, and a graceful stop.

Health follows the process's liveness (:mod:`tendril.core.liveness`): while a registered loop
is stalled every name answers NOT_SERVING, :data:`~tendril.core.liveness.HEALTH_NAME` (what
the supervisor probes) included. A service may also say that it cannot do its work now
(:meth:`ServiceServer.set_ready`: the JobService on a full disk): its own name answers
NOT_SERVING while the overall "" name and the liveness name keep following the process's
liveness, so nothing restarts a process that is alive and waits for its disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tendril.core import liveness, reflection, tls, tracing
from tendril.core.config import split_address
from tendril.core.errors import PortInUseError
from tendril.core.interceptors import ErrorInterceptor, LoggingInterceptor
from tendril.core.logs import get_logger

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

# NOTE: for servers that receive many large streams at once (the parameter server). HTTP/2
# BDP probing lets gRPC grow each stream's receive window to tens of MiB on a fast link, and
# it buffers that much per stream when the handler is slower than the network: 8 pushers
# of 1 MiB chunks took ~500 MiB of RSS. A fixed 4 MiB window per stream keeps that at ~32 MiB
# with about the same throughput on loopback (bench: `make bench`).
BOUNDED_STREAM_WINDOW_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 4 * CHUNK_BYTES),
]


@dataclasses.dataclass(frozen=True)
class Binding:
    """One gRPC service to serve: its full name, the generated add-function and the servicer."""

    name: str
    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


class ServiceServer:
    """A started-or-not gRPC server for one or more services on one address.

    ``credentials`` None means the process's default from :func:`tendril.core.tls.configure`.
    """

    def __init__(
        self,
        listen: str,
        bindings: Sequence[Binding],
        *,
        config_key: str,
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.listen = listen
        self.config_key = config_key
        self.bindings = list(bindings)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        # NOTE: no credentials given = the process-wide mTLS default (tls.configure), which is
        # plaintext for unix: sockets and when TLS is not configured.
        self._credentials = credentials if credentials is not None else tls.default_server_credentials(listen)
        # NOTE: the tracing interceptor (only when tracing.setup enabled it) goes first, so its
        # span covers the whole call and sees the status the error interceptor sets.
        self._server = grpc.aio.server(
            interceptors=[*tracing.server_interceptors(), LoggingInterceptor(), ErrorInterceptor(), *interceptors],
            options=[*SERVER_OPTIONS, *options],
        )
        for binding in self.bindings:
            binding.add(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [b.name for b in self.bindings] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable(names, self._server)
        self.port = 0
        self._serving = False
        self._unready: set[str] = set()  # binding names that said they cannot do their work now

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
        self._serving = True
        liveness.REGISTRY.subscribe(self._on_liveness)
        await self._on_liveness(liveness.REGISTRY.alive(), [])
        log.info(
            "server.started",
            address=self.address,
            services=[b.name for b in self.bindings],
            tls=self._credentials is not None,
        )

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

    async def _set_all(self, *, serving: bool) -> None:
        for name in [b.name for b in self.bindings] + ["", liveness.HEALTH_NAME]:
            await self._set(name, serving=serving and name not in self._unready)

    async def set_ready(self, name: str, ready: bool) -> None:
        """Say whether the service ``name`` (one of the bindings) can do its work now."""
        if name not in {b.name for b in self.bindings}:
            raise ValueError(f"{name!r} is not served here")
        if ready:
            self._unready.discard(name)
        else:
            self._unready.add(name)
        await self._set(name, serving=ready and self._serving and liveness.REGISTRY.alive())

    async def _on_liveness(self, alive: bool, stalled: list[str]) -> None:
        """Every name SERVING while the server runs and no loop of the process is stalled."""
        await self._set_all(serving=self._serving and alive)

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, let calls in flight finish for ``grace`` seconds, then stop."""
        self._serving = False
        liveness.REGISTRY.unsubscribe(self._on_liveness)
        await self._set_all(serving=False)
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
    # NOTE: loops end while the process stops (cancelled, or failing on a peer that went away):
    # not a reason to exit early with EXIT_LOOP_DIED.
    liveness.REGISTRY.stopping = True
    await stop()


def check_bindable(address: str) -> int:
    """0 when a server could listen on ``address`` now, else the errno of the failed bind."""
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # NOTE: gRPC sets SO_REUSEADDR too, so a port held only by TIME_WAIT connections of a
        # previous run is free for it; a listening socket still makes this bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno or errno.EADDRINUSE
    return 0
