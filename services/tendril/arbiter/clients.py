"""gRPC implementations of the arbiter's ports: the worker's LeaseService and schedulers.

Both call with peer id = the worker id (LeaseService only lets the worker itself reserve
and confirm). gRPC failures become the engine's PortError / NoRoom / PortTimeout.
"""

from __future__ import annotations

import asyncio
import collections

import grpc

from tendril.arbiter.engine import Grant, NoRoom, OfferSpec, PortError, PortTimeout
from tendril.core.amounts import Amount
from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig
from tendril.core.timeutil import from_timestamp, to_timestamp
from tendril.core.worker_record import worker_record
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

LEASE_CALL_TIMEOUT = 5.0
MAX_SCHEDULER_CHANNELS = 64
RETIRED_CHANNEL_GRACE = 30.0


def _port_error(exc: grpc.aio.AioRpcError, what: str) -> PortError:
    code = exc.code()
    text = f"{what}: {code.name if code else 'UNKNOWN'}: {exc.details()}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PortTimeout(text)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return NoRoom(exc.details() or text)
    return PortError(text)


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
            raise _port_error(exc, f"LeaseService {self.address} GetCapacity") from exc
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
            raise _port_error(exc, f"LeaseService {self.address} Reserve") from exc
        return Grant(reply.lease.lease_id, from_timestamp(reply.lease.expires_at))

    async def confirm(self, lease_id: str) -> None:
        try:
            await self._stub.Confirm(lease_pb2.ConfirmRequest(lease_id=lease_id), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _port_error(exc, f"LeaseService {self.address} Confirm") from exc

    async def release(self, lease_id: str) -> None:
        try:
            await self._stub.Release(lease_pb2.ReleaseRequest(lease_id=lease_id), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return  # already gone (expired or released): nothing left to free
            raise _port_error(exc, f"LeaseService {self.address} Release") from exc

    async def close(self) -> None:
        await self._channel.close()


class SchedulerClient:
    """Offers to schedulers' AllocationService; one cached channel per scheduler address."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._channels: collections.OrderedDict[str, grpc.aio.Channel] = collections.OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def _stub(self, address: str) -> scheduler_pb2_grpc.AllocationServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(address, peer_id=self.config.worker_id)
            self._channels[address] = channel
            while len(self._channels) > MAX_SCHEDULER_CHANNELS:
                self._retire(next(iter(self._channels)))
        self._channels.move_to_end(address)
        return scheduler_pb2_grpc.AllocationServiceStub(channel)

    def _retire(self, address: str) -> None:
        """Forget a scheduler's channel; close it after a grace so offers still out may finish."""
        old = self._channels.pop(address, None)
        if old is None:
            return
        task = asyncio.create_task(old.close(grace=RETIRED_CHANNEL_GRACE))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

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
            reply = await self._stub(address).Offer(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                # NOTE: a channel that once failed to connect sits in gRPC's reconnect backoff
                # (up to ~2 min) and fails every call at once; a scheduler that comes back must
                # get the next offer, so drop the channel and dial afresh next time.
                self._retire(address)
            raise _port_error(exc, f"scheduler {address} Offer") from exc
        return reply.decision == scheduler_pb2.OFFER_DECISION_ACCEPTED, reply.reason

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
