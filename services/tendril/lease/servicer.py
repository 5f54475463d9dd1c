"""Thin gRPC servicer over the ledger: caller identity in, lease messages out.

Watch contract for clients (JobService): the server sends the initial metadata once the
watch is registered, then EXISTING for every live lease, then each change. A watch that
breaks (LeaseService restarted, or the client fell 1024 events behind: ABORTED
WATCH_OVERFLOW) misses what happened meanwhile, so after reconnecting — once the initial
metadata arrived — check the leases you care about with Get/List: whatever is no longer
live ended while you were away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from tendril.core.amounts import Amount
from tendril.core.identity import caller_id
from tendril.core.timeutil import to_timestamp
from tendril.lease.ledger import Ledger
from tendril.lease.model import Lease, LeaseEventType, LeaseKind
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc

_KINDS = {LeaseKind.TEMPORARY: lease_pb2.LEASE_KIND_TEMPORARY, LeaseKind.RENEWABLE: lease_pb2.LEASE_KIND_RENEWABLE}
_EVENTS = {
    LeaseEventType.EXISTING: lease_pb2.LEASE_EVENT_TYPE_EXISTING,
    LeaseEventType.RESERVED: lease_pb2.LEASE_EVENT_TYPE_RESERVED,
    LeaseEventType.CONFIRMED: lease_pb2.LEASE_EVENT_TYPE_CONFIRMED,
    LeaseEventType.RENEWED: lease_pb2.LEASE_EVENT_TYPE_RENEWED,
    LeaseEventType.RELEASED: lease_pb2.LEASE_EVENT_TYPE_RELEASED,
    LeaseEventType.EXPIRED: lease_pb2.LEASE_EVENT_TYPE_EXPIRED,
}


def lease_to_proto(lease: Lease) -> lease_pb2.Lease:
    return lease_pb2.Lease(
        lease_id=lease.lease_id,
        owner_id=lease.owner_id,
        kind=_KINDS[lease.kind],
        resources=lease.resources.to_proto(),
        price=lease.price,
        request_id=lease.request_id,
        created_at=to_timestamp(lease.created_at),
        expires_at=to_timestamp(lease.expires_at),
    )


class LeaseServicer(lease_pb2_grpc.LeaseServiceServicer):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def Reserve(
        self, request: lease_pb2.ReserveRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb2.ReserveResponse:
        lease = self.ledger.reserve(
            caller_id(context),
            owner_id=request.owner_id,
            resources=Amount.from_proto(request.resources),
            price=request.price,
            request_id=request.request_id,
            ttl_seconds=request.ttl_seconds,
        )
        return lease_pb2.ReserveResponse(lease=lease_to_proto(lease))

    async def Confirm(
        self, request: lease_pb2.ConfirmRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb2.ConfirmResponse:
        return lease_pb2.ConfirmResponse(
            lease=lease_to_proto(self.ledger.confirm(caller_id(context), request.lease_id))
        )

    async def Renew(
        self, request: lease_pb2.RenewRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb2.RenewResponse:
        return lease_pb2.RenewResponse(lease=lease_to_proto(self.ledger.renew(caller_id(context), request.lease_id)))

    async def Release(
        self, request: lease_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb2.ReleaseResponse:
        return lease_pb2.ReleaseResponse(
            lease=lease_to_proto(self.ledger.release(caller_id(context), request.lease_id))
        )

    async def Get(self, request: lease_pb2.GetRequest, context: grpc.aio.ServicerContext) -> lease_pb2.GetResponse:
        return lease_pb2.GetResponse(lease=lease_to_proto(self.ledger.get(request.lease_id)))

    async def List(self, request: lease_pb2.ListRequest, context: grpc.aio.ServicerContext) -> lease_pb2.ListResponse:
        return lease_pb2.ListResponse(leases=[lease_to_proto(lease) for lease in self.ledger.leases(request.owner_id)])

    async def Watch(
        self, request: lease_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[lease_pb2.WatchResponse]:
        watch = self.ledger.watch(request.owner_id, name=caller_id(context) or context.peer())
        async for event in watch.relay(context):
            yield lease_pb2.WatchResponse(type=_EVENTS[event.type], lease=lease_to_proto(event.lease))

    async def GetCapacity(
        self, request: lease_pb2.GetCapacityRequest, context: grpc.aio.ServicerContext
    ) -> lease_pb2.GetCapacityResponse:
        total, reserved, free = self.ledger.capacity()
        return lease_pb2.GetCapacityResponse(total=total.to_proto(), reserved=reserved.to_proto(), free=free.to_proto())
