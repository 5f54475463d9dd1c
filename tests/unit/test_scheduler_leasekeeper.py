"""The reference scheduler's lease keeper against an in-process LeaseService double.

The first Renew confirms the offered lease: a LeaseService that does not answer (restarting,
a network blip) is asked again until the temporary lease would have expired, instead of
losing the member at once; an answer that the lease is gone is final.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind
from tendril.core.ports import free_port
from tendril.core.server import Binding, ServiceServer
from tendril.core.timeutil import now, to_timestamp
from tendril.lease.errors import LeaseError, LeaseReason
from tendril.scheduler.leasekeeper import LeaseKeeper, LeaseLost
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc


class Renewals(lease_pb2_grpc.LeaseServiceServicer):
    """Answers Renew from a script: "down" (UNAVAILABLE without a reason), "gone" (NOT_FOUND
    LEASE_NOT_FOUND), then a renewed lease once the script is used up."""

    def __init__(self, *steps: str, forever: str = "") -> None:
        self.steps = list(steps)
        self.forever = forever
        self.calls = 0

    async def Renew(self, request: lease_pb2.RenewRequest, context: Any) -> lease_pb2.RenewResponse:
        self.calls += 1
        step = self.steps.pop(0) if self.steps else self.forever
        if step == "down":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the LeaseService is restarting")
        if step == "gone":
            raise LeaseError(ErrorKind.NOT_FOUND, "released", reason=LeaseReason.LEASE_NOT_FOUND)
        lease = lease_pb2.Lease(lease_id=request.lease_id, expires_at=to_timestamp(now() + 10))
        return lease_pb2.RenewResponse(lease=lease)


@pytest.fixture
async def lease_service() -> AsyncIterator[tuple[Renewals, grpc.aio.Channel]]:
    servicer = Renewals()
    address = f"127.0.0.1:{free_port()}"
    server = ServiceServer(
        address,
        [Binding("tendril.lease.v1.LeaseService", lease_pb2_grpc.add_LeaseServiceServicer_to_server, servicer)],
        config_key="test.listen",
    )
    await server.start()
    channel = open_channel(address, peer_id="sched-1")
    try:
        yield servicer, channel
    finally:
        await channel.close()
        await server.stop(0)


async def test_the_first_renewal_retries_a_lease_service_that_does_not_answer(
    lease_service: tuple[Renewals, grpc.aio.Channel],
) -> None:
    servicer, channel = lease_service
    servicer.steps = ["down", "down", "down"]
    keeper = LeaseKeeper(channel, "lease-1", "w1", expires_at=now() + 5)
    await keeper.confirmed()
    assert servicer.calls == 4 and keeper.renewals == 1 and keeper.expires_at > now() + 5


async def test_the_first_renewal_gives_up_when_the_temporary_lease_would_have_expired(
    lease_service: tuple[Renewals, grpc.aio.Channel],
) -> None:
    servicer, channel = lease_service
    servicer.forever = "down"
    keeper = LeaseKeeper(channel, "lease-1", "w1", expires_at=now() + 0.6)
    started = time.monotonic()
    with pytest.raises(LeaseLost, match="never confirmed: UNAVAILABLE"):
        await keeper.confirmed()
    assert servicer.calls >= 3 and time.monotonic() - started < 2.0

    servicer.calls = 0
    late = LeaseKeeper(channel, "lease-2", "w1", expires_at=now() - 1)
    with pytest.raises(LeaseLost):
        await late.confirmed()
    assert servicer.calls == 1  # tried once: the lease cannot be alive any more


async def test_a_lease_that_is_gone_is_lost_at_once(lease_service: tuple[Renewals, grpc.aio.Channel]) -> None:
    servicer, channel = lease_service
    servicer.steps = ["gone"]
    keeper = LeaseKeeper(channel, "lease-1", "w1", expires_at=now() + 5)
    with pytest.raises(LeaseLost, match="NOT_FOUND: released"):
        await keeper.confirmed()
    assert servicer.calls == 1 and keeper.renewals == 0
