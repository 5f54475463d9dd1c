"""The WorkerRecord a worker shows the network (registry entry, offers to schedulers)."""

from __future__ import annotations

import importlib.metadata

from tendril.core.amounts import Amount
from tendril.core.config import WorkerConfig
from tendril_proto.common.v1 import common_pb2


def tendril_version() -> str:
    try:
        return importlib.metadata.version("tendril")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def worker_endpoints(config: WorkerConfig) -> common_pb2.WorkerEndpoints:
    """Advertised addresses of the worker's five services."""
    return common_pb2.WorkerEndpoints(
        arbiter=config.advertised("arbiter"),
        lease=config.advertised("lease"),
        job=config.advertised("job"),
        data_fetcher=config.advertised("data_fetcher"),
        parameter_server=config.advertised("paramserver"),
    )


def worker_record(config: WorkerConfig, total: Amount) -> common_pb2.WorkerRecord:
    """The worker's record: id, endpoints, ``total`` resources, executors, price, version."""
    return common_pb2.WorkerRecord(
        worker_id=config.worker_id,
        endpoints=worker_endpoints(config),
        resources=total.to_proto(),
        executors=[common_pb2.ExecutorRef(executor_class=e.executor_class, name=e.name) for e in config.executors],
        price=config.arbiter.price,
        version=tendril_version(),
    )
