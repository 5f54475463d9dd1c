"""The arbiter's scheduler client recovers at once when a scheduler comes (back) up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tendril.arbiter.clients import SchedulerClient
from tendril.arbiter.engine import OfferSpec, PortError
from tendril.core.amounts import Amount
from tendril.core.ports import free_port
from tendril.core.server import Binding, ServiceServer
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.procs import worker_config


class _Accepting(scheduler_pb2_grpc.AllocationServiceServicer):
    async def Offer(self, request, context):
        return scheduler_pb2.OfferResponse(decision=scheduler_pb2.OFFER_DECISION_ACCEPTED)


def _spec() -> OfferSpec:
    one = Amount(cpu=1.0, memory_gib=1.0, storage_gib=1.0, gpu=0)
    return OfferSpec("offer-1", "req-1", "lease-1", one, 100.0, time.time() + 5, one)


async def test_offer_reaches_a_scheduler_that_came_up_after_a_refusal(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    client = SchedulerClient(worker_config(tmp_path))
    server = ServiceServer(
        address,
        [
            Binding(
                "tendril.scheduler.v1.AllocationService",
                scheduler_pb2_grpc.add_AllocationServiceServicer_to_server,
                _Accepting(),
            )
        ],
        config_key="test.listen",
    )
    try:
        with pytest.raises(PortError):
            await client.offer(address, _spec(), timeout=2.0)
        await server.start()
        started = time.monotonic()
        accepted, _ = await client.offer(address, _spec(), timeout=5.0)
        assert accepted
        # NOTE: a cached channel would sit in gRPC's reconnect backoff (1 s and more) and fail
        # this call at once; a fresh channel connects within milliseconds.
        assert time.monotonic() - started < 1.0
    finally:
        await client.close()
        await server.stop(0)
