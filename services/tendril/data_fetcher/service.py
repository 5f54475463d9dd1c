"""``build(config)``: the DataFetcher service (cache + core + servicer + ServiceServer)."""

from __future__ import annotations

from tendril.core.calls import ChannelPool
from tendril.core.config import WorkerConfig
from tendril.core.errors import ConfigError
from tendril.core.logs import get_logger
from tendril.core.server import Binding, ServiceServer
from tendril.data_fetcher.cache import SliceCache
from tendril.data_fetcher.clients import GrpcCoordinator, GrpcSliceSource
from tendril.data_fetcher.fetcher import MAX_PREFETCH, DataFetcher
from tendril.data_fetcher.model import FetchPolicy
from tendril.data_fetcher.servicer import DataFetcherServicer
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc

log = get_logger("tendril.data_fetcher")

SERVICE_NAME = data_pb2.DESCRIPTOR.services_by_name["DataFetcherService"].full_name


class DataFetcherService:
    """The DataFetcher process's service: start serving, stop gracefully."""

    def __init__(self, config: WorkerConfig, policy: FetchPolicy | None = None) -> None:
        section = config.data_fetcher
        if section.cache_bytes <= 0:
            raise ConfigError(
                f"data_fetcher.cache_bytes must be positive, got {section.cache_bytes}", key="data_fetcher.cache_bytes"
            )
        if not 1 <= section.prefetch <= MAX_PREFETCH:
            raise ConfigError(
                f"data_fetcher.prefetch must be 1 to {MAX_PREFETCH}, got {section.prefetch}",
                key="data_fetcher.prefetch",
            )
        self.policy = policy or FetchPolicy()
        self.cache = SliceCache(config.state_dir / "cache", section.cache_bytes)
        self.pool = ChannelPool(config.worker_id)
        self.core = DataFetcher(
            self.cache,
            GrpcSliceSource(self.pool),
            GrpcCoordinator(self.pool, self.policy.call_timeout_seconds),
            default_prefetch=section.prefetch,
            policy=self.policy,
        )
        self.servicer = DataFetcherServicer(self.core)
        self.server = ServiceServer(
            config.listen("data_fetcher"),
            [
                Binding(
                    SERVICE_NAME, data_pb2_grpc.add_DataFetcherServiceServicer_to_server, DataFetcherServicer(self.core)
                )
            ],
            config_key="data_fetcher.listen",
        )

    async def start(self) -> None:
        self.cache.rebuild()
        self.core.export_metrics()  # the cache's size as rebuilt from disk
        await self.server.start()

    async def stop(self) -> None:
        # NOTE: closing the jobs first answers callers still waiting in NextSlice (UNAVAILABLE,
        # FETCHER_STOPPING) instead of holding the server's grace period.
        await self.core.close()
        await self.server.stop(grace=2.0)
        await self.pool.close()


def build(config: WorkerConfig) -> DataFetcherService:
    return DataFetcherService(config)
