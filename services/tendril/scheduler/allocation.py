"""The allocation side of a peer that leases workers, shared by the reference scheduler and
``tendril.submit``: an offer as the core sees it (checked from its message), and a resource
request published on the gateway bus."""

from __future__ import annotations

import dataclasses

import grpc
from google.protobuf import any_pb2

from tendril.core.errors import ErrorKind
from tendril.core.gateways import Gateways
from tendril.core.logs import get_logger
from tendril.core.timeutil import now, to_timestamp
from tendril.core.validate import Checks
from tendril.scheduler.errors import SchedulerError, SchedulerReason
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2

log = get_logger("tendril.scheduler.allocation")
CHECK = Checks(SchedulerError)
PUBLISH_TIMEOUT_SECONDS = 15.0


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """The worker's service addresses a scheduler uses."""

    lease: str
    job: str
    parameter_server: str


@dataclasses.dataclass(frozen=True)
class OfferIn:
    """An offer as the core sees it."""

    request_id: str
    worker_id: str
    lease_id: str
    endpoints: Endpoints
    expires_at: float = 0.0  # the offer's expiry (epoch seconds): the temporary lease ends then; 0 = unknown
    price: float = 0.0  # the price the worker asks


def _required(value: str, field: str, what: str) -> None:
    if not value:
        raise SchedulerError(
            ErrorKind.INVALID_ARGUMENT,
            f"{field} is required: {what}",
            reason=SchedulerReason.MISSING_FIELD,
            metadata={"field": field},
        )


def parse_offer(request: scheduler_pb2.OfferRequest) -> OfferIn:
    """The offer of an AllocationService.Offer call; INVALID_ARGUMENT when a required field is missing."""
    _required(request.request_id, "request_id", "the id of the request this offer answers")
    _required(request.lease_id, "lease_id", "the temporary lease that holds the offered resources")
    worker = request.worker
    _required(worker.worker_id, "worker.worker_id", "the offering worker's id")
    _required(worker.endpoints.lease, "worker.endpoints.lease", "the LeaseService address the scheduler renews at")
    _required(worker.endpoints.job, "worker.endpoints.job", "the JobService address the scheduler dispatches to")
    return OfferIn(
        request.request_id,
        worker.worker_id,
        request.lease_id,
        Endpoints(worker.endpoints.lease, worker.endpoints.job, worker.endpoints.parameter_server),
        CHECK.timestamp(request.expires_at, "expires_at", SchedulerReason.BAD_EXPIRES_AT)
        if request.HasField("expires_at")
        else 0.0,
        price=request.price if request.price == request.price else 0.0,  # NOTE: a NaN price counts as none
    )


@dataclasses.dataclass(frozen=True)
class Wanted:
    """What one resource request asks for."""

    cpu: float = 0.0
    memory_gib: float = 0.0
    storage_gib: float = 0.0
    gpu: int = 0


def resource_request(
    request_id: str,
    *,
    peer_id: str,
    address: str,
    wanted: Wanted,
    executor: tuple[str, str],
    bid: float,
    deadline_seconds: float,
) -> arbiter_pb2.ResourceRequest:
    """A ResourceRequest for one lease, void ``deadline_seconds`` from now."""
    return arbiter_pb2.ResourceRequest(
        request_id=request_id,
        scheduler=common_pb2.PeerRef(id=peer_id, address=address),
        resources=common_pb2.Resources(
            cpu=wanted.cpu, memory_gib=wanted.memory_gib, storage_gib=wanted.storage_gib, gpu=wanted.gpu
        ),
        executors=[common_pb2.ExecutorRef(executor_class=executor[0], name=executor[1])],
        bid=bid,
        deadline=to_timestamp(now() + deadline_seconds),
    )


async def publish_request(gateways: Gateways, topic: str, sender: str, request: arbiter_pb2.ResourceRequest) -> int:
    """Publish ``request`` on the bus topic (the workers' arbiters read it) through the gateway in
    use, moving to the next gateway when it is down; returns the subscribers it reached, -1 when no
    gateway took it (logged: the caller publishes again later)."""
    payload = any_pb2.Any()
    payload.Pack(request)
    publish = gateway_pb2.PublishRequest(topic=topic, sender=sender, payload=payload)
    try:
        reply = await gateways.call(
            lambda channel: gateway_pb2_grpc.BusServiceStub(channel).Publish(publish, timeout=PUBLISH_TIMEOUT_SECONDS)
        )
    except grpc.aio.AioRpcError as exc:
        log.warning("request.publish_failed", request_id=request.request_id, code=exc.code().name, error=exc.details())
        return -1
    log.info("request.published", request_id=request.request_id, subscribers=reply.delivered)
    return int(reply.delivered)
