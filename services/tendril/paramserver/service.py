"""Wiring of the ParameterServer process: core + servicer on one ServiceServer."""

from __future__ import annotations

import asyncio
import contextlib

from tendril.core import tls
from tendril.core.config import WorkerConfig
from tendril.core.dataplane import DataPlane
from tendril.core.logs import get_logger
from tendril.core.server import BOUNDED_STREAM_WINDOW_OPTIONS, Binding, ServiceServer
from tendril.paramserver.core import ParameterServerCore
from tendril.paramserver.servicer import SERVICE_NAME, ParameterServerServicer, add_to_server

log = get_logger("tendril.paramserver")

RETENTION_SECONDS = 3600.0  # how often runs past paramserver.keep_closed_runs_days are purged
DAY = 86400.0


class ParameterServerService:
    """The ParameterServer: listens on ``config.listen("paramserver")``, its data port on ``config.data_listen()``."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.core = ParameterServerCore(
            config.state_dir / "paramserver", memory_budget=config.paramserver.memory_budget_mib * 1024 * 1024
        )
        data_listen = config.data_listen()
        # NOTE: the data port speaks TLS with the process's [tls] certificate whenever the gRPC
        # port does (tls.configure ran before build, in service_main).
        self.plane = (
            DataPlane(
                data_listen,
                tls=tls.active(),
                config_key="paramserver.data_listen",
                streams=config.paramserver.data_streams,
            )
            if data_listen
            else None
        )
        self.server = ServiceServer(
            config.listen("paramserver"),
            [Binding(SERVICE_NAME, add_to_server, ParameterServerServicer(self.core, self.plane))],
            config_key="paramserver.listen",
            # Many workers push at once: bound what gRPC buffers per stream (peak RSS O(model)).
            options=BOUNDED_STREAM_WINDOW_OPTIONS,
        )
        self._retention: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return self.server.address

    async def _expire_runs(self) -> None:
        """Purge runs over for longer than ``paramserver.keep_closed_runs_days`` (0: never)."""
        days = self.config.paramserver.keep_closed_runs_days
        if days:
            await self.core.purge_expired(days * DAY)

    async def _expire_runs_forever(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_SECONDS)
            try:
                await self._expire_runs()
            except Exception as exc:  # (a disk error) the next pass tries again; serving goes on
                log.warning("paramserver.retention_failed", error=repr(exc))

    async def start(self) -> None:
        await self.core.load_saved()
        await self._expire_runs()
        if self.plane is not None:
            await self.plane.start()
        try:
            await self.server.start()
        except BaseException:
            if self.plane is not None:
                await self.plane.stop()
            raise
        self._retention = asyncio.create_task(self._expire_runs_forever(), name="paramserver-retention")

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        await self.server.stop()
        if self.plane is not None:
            await self.plane.stop()
        await self.core.stop()


def build(config: WorkerConfig) -> ParameterServerService:
    return ParameterServerService(config)
