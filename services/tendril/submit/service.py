"""A submitter process: its gRPC server (AllocationService, and SubmitService for `tendril jobs
serve`) and the submissions it runs; `tendril jobs submit` runs one in-process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from tendril.core.calls import ChannelPool
from tendril.core.gateways import Gateways
from tendril.core.server import Binding, ServiceServer
from tendril.submit import core
from tendril.submit.jobfile import JobFile
from tendril.submit.network import GrpcNetwork
from tendril.submit.offers import OfferBox
from tendril.submit.servicer import AllocationServicer, OfferRouter, SubmitServicer
from tendril_proto.scheduler.v1 import scheduler_pb2_grpc
from tendril_proto.submit.v1 import submit_pb2_grpc

ALLOCATION_SERVICE = "tendril.scheduler.v1.AllocationService"
SUBMIT_SERVICE = "tendril.submit.v1.SubmitService"


class Submitter:
    """Serves offers (and, with ``out_root``, SubmitService) on ``listen``; runs submissions."""

    def __init__(
        self,
        *,
        peer_id: str,
        listen: str,
        gateway: str,
        advertise_address: str = "",
        out_root: Path | None = None,
        config_key: str = "--listen",
    ) -> None:
        self.peer_id = peer_id
        self.gateway = gateway
        self.advertise_address = advertise_address
        self.out_root = out_root
        self.router = OfferRouter()
        self.pool = ChannelPool(peer_id, max_channels=None)
        self.gateways = Gateways(gateway, peer_id=peer_id)
        bindings = [
            Binding(
                ALLOCATION_SERVICE,
                scheduler_pb2_grpc.add_AllocationServiceServicer_to_server,
                AllocationServicer(self.router),
            )
        ]
        if out_root is not None:
            bindings.append(
                Binding(
                    SUBMIT_SERVICE,
                    submit_pb2_grpc.add_SubmitServiceServicer_to_server,
                    SubmitServicer(self.submit, self._out_for),
                )
            )
        self.server = ServiceServer(listen, bindings, config_key=config_key)

    @property
    def address(self) -> str:
        return self.advertise_address or self.server.address

    def _out_for(self, job: JobFile) -> Path:
        assert self.out_root is not None
        return self.out_root / f"{job.name}-{uuid.uuid4().hex[:8]}"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(1.0)
        await self.pool.close()
        await self.gateways.close()

    async def submit(self, job: JobFile, out: Path, emit: Callable[[core.Event], None]) -> core.Done:
        """Run ``job`` to its end; results into the new folder ``out``."""
        network = GrpcNetwork(
            self.pool, gateways=self.gateways, topic=job.network.topic, advertised=lambda: self.address
        )
        box = OfferBox(window=job.network.offer_window_seconds)
        self.router.boxes.add(box)
        try:
            return await core.Submission(job, network, box, out, emit=emit).run()
        finally:
            self.router.boxes.discard(box)
