"""Wiring of the LeaseService: ledger at ``<state_dir>/leases.db``, servicer, server, pruner."""

from __future__ import annotations

import asyncio
import contextlib

from tendril.core import liveness
from tendril.core.amounts import configured_total
from tendril.core.config import WorkerConfig
from tendril.core.logs import get_logger
from tendril.core.server import Binding, ServiceServer
from tendril.lease.ledger import Ledger
from tendril.lease.servicer import LeaseServicer
from tendril_proto.lease.v1 import lease_pb2_grpc

log = get_logger("tendril.leases")

SERVICE_NAME = "tendril.lease.v1.LeaseService"
DB_NAME = "leases.db"


class LeaseService:
    """The LeaseService process: opens (and reconciles) the ledger, serves, prunes."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.ledger: Ledger | None = None
        self.server: ServiceServer | None = None
        self._pruner: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        assert self.server is not None, "start() first"
        return self.server.address

    async def start(self) -> None:
        config = self.config
        state_dir = config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        total = configured_total(config.resources, state_dir)
        self.ledger = Ledger(
            state_dir / DB_NAME,
            total=total,
            worker_id=config.worker_id,
            temporary_seconds=config.lease.temporary_seconds,
            renewable_seconds=config.lease.renewable_seconds,
        )
        self.server = ServiceServer(
            config.listen("lease"),
            [Binding(SERVICE_NAME, lease_pb2_grpc.add_LeaseServiceServicer_to_server, LeaseServicer(self.ledger))],
            config_key="lease.listen",
        )
        try:
            await self.server.start()
        except BaseException:
            self.ledger.close()
            raise
        self._pruner = liveness.supervised(
            self._prune_forever(), name="lease-pruner", every=config.lease.prune_interval_seconds
        )
        log.info("leases.started", total=str(total), db=str(state_dir / DB_NAME), worker_id=config.worker_id)

    async def _prune_forever(self) -> None:
        assert self.ledger is not None
        interval = self.config.lease.prune_interval_seconds
        while True:
            liveness.beat()
            await asyncio.sleep(interval)
            try:
                self.ledger.prune()
            except Exception as exc:  # a failed sweep must not stop the next one
                log.error("leases.prune_failed", exc_info=exc)

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self.ledger is not None:
            # Watch streams end first, so the graceful stop does not wait on them.
            self.ledger.end_watches()
        if self.server is not None:
            await self.server.stop()
        if self.ledger is not None:
            self.ledger.close()


def build(config: WorkerConfig) -> LeaseService:
    return LeaseService(config)
