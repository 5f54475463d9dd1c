"""Wiring of the ParameterServer process: core + servicer on one ServiceServer."""

from __future__ import annotations

from tendril.core.config import WorkerConfig
from tendril.core.server import BOUNDED_STREAM_WINDOW_OPTIONS, Binding, ServiceServer
from tendril.paramserver.core import ParameterServerCore
from tendril.paramserver.servicer import SERVICE_NAME, ParameterServerServicer, add_to_server


class ParameterServerService:
    """The ParameterServer: listens on ``config.listen("paramserver")``."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.core = ParameterServerCore(
            config.state_dir / "paramserver", memory_budget=config.paramserver.memory_budget_mib * 1024 * 1024
        )
        self.server = ServiceServer(
            config.listen("paramserver"),
            [Binding(SERVICE_NAME, add_to_server, ParameterServerServicer(self.core))],
            config_key="paramserver.listen",
            # Many workers push at once: bound what gRPC buffers per stream (peak RSS O(model)).
            options=BOUNDED_STREAM_WINDOW_OPTIONS,
        )

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        await self.core.load_saved()
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
        await self.core.stop()


def build(config: WorkerConfig) -> ParameterServerService:
    return ParameterServerService(config)
