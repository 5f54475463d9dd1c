"""The data node process: a SliceStore behind a ServiceServer, announced in the gateway registry."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from tendril.core.announce import RegistryAnnouncer
from tendril.core.config import split_address
from tendril.core.logs import get_logger
from tendril.core.server import Binding, ServiceServer
from tendril.data_node.servicer import DataNodeServicer, manifest_proto
from tendril.data_node.store import SliceStore
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc

log = get_logger("tendril.data_node")

DEFAULT_LISTEN = "127.0.0.1:50070"
RECORD_KIND = "dataset"
SERVICE_NAME = data_pb2.DESCRIPTOR.services_by_name["DataNodeService"].full_name


@dataclasses.dataclass
class DataNodeOptions:
    """What `tendril data serve` was asked to do."""

    folder: Path
    listen: str = DEFAULT_LISTEN
    gateway: str = ""  # empty: do not announce
    dataset_id: str | None = None  # None: the manifest's id
    advertise: str = ""  # address others reach this node at; empty: derived from the bound address
    registry_ttl_seconds: float = 15.0
    verify: bool = False  # hash every slice at start


class DataNode:
    """One data set served on one address."""

    def __init__(self, options: DataNodeOptions) -> None:
        self.options = options
        self.store = SliceStore(options.folder, dataset_id=options.dataset_id, verify=options.verify)
        self.servicer = DataNodeServicer(self.store)
        self.server = ServiceServer(
            options.listen,
            [Binding(SERVICE_NAME, data_pb2_grpc.add_DataNodeServiceServicer_to_server, self.servicer)],
            config_key="--listen",
        )
        self.announcer: RegistryAnnouncer | None = None

    @property
    def dataset_id(self) -> str:
        return self.store.dataset_id

    @property
    def address(self) -> str:
        """The address announced to others."""
        if self.options.advertise:
            return self.options.advertise
        host, port = split_address(self.server.address)
        # NOTE: a wildcard bind cannot be dialled; announce the host name instead.
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"{host}:{port}"

    def record(self) -> data_pb2.DatasetRecord:
        return data_pb2.DatasetRecord(
            dataset_id=self.dataset_id,
            address=self.address,
            manifest=manifest_proto(self.store.manifest, self.dataset_id),
        )

    async def start(self) -> None:
        await self.server.start()
        manifest = self.store.manifest
        log.info(
            "data_node.serving",
            dataset_id=self.dataset_id,
            address=self.address,
            slices=len(manifest.slices),
            total_bytes=manifest.total_bytes,
        )
        if self.options.gateway:
            self.announcer = RegistryAnnouncer(
                self.options.gateway,
                RECORD_KIND,
                self.dataset_id,
                self.record(),
                ttl_seconds=self.options.registry_ttl_seconds,
                peer_id=f"data-node-{self.dataset_id}",
            )
            await self.announcer.start()

    async def stop(self) -> None:
        if self.announcer is not None:
            await self.announcer.stop()
        await self.server.stop(grace=2.0)
