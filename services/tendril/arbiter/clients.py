"""gRPC implementations of the arbiter's ports: the worker's LeaseService and JobService, schedulers.

Both call with peer id = the worker id (LeaseService only lets the worker itself reserve
and confirm). gRPC failures become the engine's PortError / NoRoom / PortTimeout (by
:func:`tendril.core.calls.remote_error`'s kind).
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.arbiter.engine import Grant, LeaseGone, NoRoom, OfferSpec, PortError, PortTimeout
from tendril.core.amounts import Amount
from tendril.core.calls import ChannelPool, remote_error
from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig
from tendril.core.errors import ErrorKind
from tendril.core.timeutil import from_timestamp, to_timestamp
from tendril.core.worker_record import worker_record
from tendril_proto.job.v1 import job_pb2
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

LEASE_CALL_TIMEOUT = 5.0
JOB_HEALTH_TIMEOUT = 1.0
JOB_SERVICE_NAME = job_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
MAX_SCHEDULER_CHANNELS = 64
RETIRED_CHANNEL_GRACE = 30.0


def _port_failure(kind: ErrorKind, message: str, *, reason: str, metadata: Mapping[str, str]) -> PortError:
    if kind is ErrorKind.DEADLINE_EXCEEDED:
        return PortTimeout(message)
    if kind is ErrorKind.RESOURCE_EXHAUSTED:
        return NoRoom(message)
    return PortError(message)


def _port_error(exc: grpc.aio.AioRpcError, what: str, address: str) -> PortError:
    return remote_error(exc, what, _port_failure, address=address)


class LeaseClient:
    """The worker's LeaseService, called as the worker itself."""

    def __init__(self, address: str, *, worker_id: str, timeout: float = LEASE_CALL_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = open_channel(address, peer_id=worker_id)
        self._stub = lease_pb2_grpc.LeaseServiceStub(self._channel)

    async def capacity(self) -> tuple[Amount, Amount]:
        try:
            reply = await self._stub.GetCapacity(lease_pb2.GetCapacityRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _port_error(exc, f"LeaseService at {self.address} (GetCapacity)", self.address) from exc
        return Amount.from_proto(reply.total), Amount.from_proto(reply.free)

    async def reserve(self, *, owner_id: str, resources: Amount, price: float, request_id: str) -> Grant:
        try:
            reply = await self._stub.Reserve(
                lease_pb2.ReserveRequest(
                    owner_id=owner_id, resources=resources.to_proto(), price=price, request_id=request_id
                ),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _port_error(exc, f"LeaseService at {self.address} (Reserve)", self.address) from exc
        return Grant(reply.lease.lease_id, from_timestamp(reply.lease.expires_at))

    async def confirm(self, lease_id: str) -> None:
        try:
            await self._stub.Confirm(lease_pb2.ConfirmRequest(lease_id=lease_id), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise LeaseGone(f"LeaseService at {self.address} (Confirm): {exc.details()}") from exc
            raise _port_error(exc, f"LeaseService at {self.address} (Confirm)", self.address) from exc

    async def release(self, lease_id: str) -> None:
        try:
            await self._stub.Release(lease_pb2.ReleaseRequest(lease_id=lease_id), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return  # already gone (expired or released): nothing left to free
            raise _port_error(exc, f"LeaseService at {self.address} (Release)", self.address) from exc

    async def close(self) -> None:
        await self._channel.close()


class JobsHealth:
    """Can the worker run jobs? The JobService's grpc.health.v1 answer under its own name.

    NOTE: only an explicit NOT_SERVING stops offers. A JobService that does not answer is
    being restarted by the supervisor (about a second) or not part of this process set (tests
    of allocation alone): offers go on as before, and a dispatch in that moment fails on its own.
    """

    def __init__(self, address: str, *, worker_id: str, timeout: float = JOB_HEALTH_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = open_channel(address, peer_id=worker_id)
        self._stub = health_pb2_grpc.HealthStub(self._channel)

    async def cannot_run(self) -> str:
        try:
            reply = await self._stub.Check(
                health_pb2.HealthCheckRequest(service=JOB_SERVICE_NAME), timeout=self.timeout
            )
        except grpc.aio.AioRpcError:
            return ""
        if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
            return (
                f"its JobService at {self.address} reports NOT_SERVING (its state or work dir is full or read-only, "
                "or its jobs.db fails; see its log)"
            )
        return ""

    async def close(self) -> None:
        await self._channel.close()


class SchedulerClient:
    """Offers to schedulers' AllocationService; one pooled channel per scheduler address."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._pool = ChannelPool(
            config.worker_id, max_channels=MAX_SCHEDULER_CHANNELS, close_grace=RETIRED_CHANNEL_GRACE
        )

    async def offer(self, address: str, spec: OfferSpec, timeout: float) -> tuple[bool, str]:
        request = scheduler_pb2.OfferRequest(
            offer_id=spec.offer_id,
            request_id=spec.request_id,
            worker=worker_record(self.config, spec.worker_total),
            lease_id=spec.lease_id,
            resources=spec.resources.to_proto(),
            price=spec.price,
            expires_at=to_timestamp(spec.expires_at),
        )
        try:
            # A scheduler that could not be reached gets a fresh channel next time (ChannelPool).
            with self._pool.using(address) as channel:
                reply = await scheduler_pb2_grpc.AllocationServiceStub(channel).Offer(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _port_error(exc, f"scheduler at {address} (Offer)", address) from exc
        return reply.decision == scheduler_pb2.OFFER_DECISION_ACCEPTED, reply.reason

    async def close(self) -> None:
        await self._pool.close()
