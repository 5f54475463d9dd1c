"""Thin gRPC servicer of the arbiter: Solicit (a direct request) and ListOffers."""

from __future__ import annotations

import grpc

from tendril.arbiter.convert import offer_to_proto, request_from_proto
from tendril.arbiter.engine import Arbiter
from tendril.arbiter.errors import ArbiterError, ArbiterReason
from tendril.arbiter.policy import problems
from tendril.core.errors import ErrorKind
from tendril.core.identity import caller_id
from tendril.core.timeutil import now
from tendril.core.validate import Checks
from tendril_proto.arbiter.v1 import arbiter_pb2, arbiter_pb2_grpc

DEFAULT_LIST_LIMIT = 100
CHECK = Checks(ArbiterError)


class ArbiterServicer(arbiter_pb2_grpc.ArbiterServiceServicer):
    def __init__(self, arbiter: Arbiter) -> None:
        self.arbiter = arbiter

    async def Solicit(
        self, request: arbiter_pb2.SolicitRequest, context: grpc.aio.ServicerContext
    ) -> arbiter_pb2.SolicitResponse:
        if not request.HasField("request"):
            raise ArbiterError(
                ErrorKind.INVALID_ARGUMENT,
                "request is missing; send a ResourceRequest",
                reason=ArbiterReason.REQUEST_MISSING,
            )
        if request.request.HasField("deadline"):
            CHECK.timestamp(request.request.deadline, "request.deadline", ArbiterReason.REQUEST_INVALID)
        req = request_from_proto(request.request)
        found = problems(req)
        if req.deadline is not None and req.deadline <= now():
            found.append("deadline is not in the future; give the instant after which the request is void")
        if found:
            raise ArbiterError(
                ErrorKind.INVALID_ARGUMENT,
                "invalid ResourceRequest: " + "; ".join(found),
                reason=ArbiterReason.REQUEST_INVALID,
            )
        caller = caller_id(context)
        if caller != req.scheduler_id:
            raise ArbiterError(
                ErrorKind.PERMISSION_DENIED,
                f"a scheduler may only solicit for itself: the request names scheduler {req.scheduler_id!r} but "
                f"the caller is {caller!r}; call with tendril-peer-id = your scheduler id",
                reason=ArbiterReason.NOT_THE_SCHEDULER,
            )
        record = await self.arbiter.submit(req, source="solicit")
        return arbiter_pb2.SolicitResponse(offer=offer_to_proto(record))

    async def ListOffers(
        self, request: arbiter_pb2.ListOffersRequest, context: grpc.aio.ServicerContext
    ) -> arbiter_pb2.ListOffersResponse:
        limit = request.limit or DEFAULT_LIST_LIMIT
        return arbiter_pb2.ListOffersResponse(offers=[offer_to_proto(r) for r in self.arbiter.history.newest(limit)])
