"""A real test scheduler: a gRPC AllocationService server started inside a test.

It is not a mock: workers reach it over the network like any scheduler, and it calls their
LeaseService with its own peer id. Use it wherever a test needs "a scheduler".

Typical use::

    async with SchedulerDouble("sched-a", decide=accept()) as sched:
        request = sched.request(cpu=2, memory_gib=1)
        await sched.publish(gateway_address, request)          # on topic tendril/worker
        offer = (await sched.wait_offers(1))[0]                 # a ReceivedOffer
        lease = await sched.wait_renewable(lease_address, offer.request.lease_id)
        await sched.renew(lease_address, lease.lease_id)
        await sched.release(lease_address, lease.lease_id)

Deciding offers: ``decide`` is an async function ``(OfferRequest) -> (OfferDecision, reason)``.
Ready-made ones: :func:`accept`, :func:`reject`, :func:`delay` (answer after a pause, e.g.
past the offer's expiry to provoke a timeout). Swap it any time with :meth:`set_decider`.
Every offer is recorded in :attr:`SchedulerDouble.offers` (with its decision and times).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2

from tendril.core.channel import open_channel
from tendril.core.server import Binding, ServiceServer
from tendril.core.timeutil import to_timestamp
from tendril.core.tls import TlsMaterial
from tendril_proto.arbiter.v1 import arbiter_pb2, arbiter_pb2_grpc
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

Decision = tuple[int, str]  # (scheduler_pb2.OfferDecision, reason)
Decider = Callable[[scheduler_pb2.OfferRequest], Awaitable[Decision]]

WORKER_TOPIC = "tendril/worker"


def accept(reason: str = "accepted by the test scheduler") -> Decider:
    async def decide(offer: scheduler_pb2.OfferRequest) -> Decision:
        return scheduler_pb2.OFFER_DECISION_ACCEPTED, reason

    return decide


def reject(reason: str = "rejected by the test scheduler") -> Decider:
    async def decide(offer: scheduler_pb2.OfferRequest) -> Decision:
        return scheduler_pb2.OFFER_DECISION_REJECTED, reason

    return decide


def delay(seconds: float, then: Decider | None = None) -> Decider:
    """Hold the Offer call ``seconds`` before answering with ``then`` (default: accept)."""
    after = then or accept()

    async def decide(offer: scheduler_pb2.OfferRequest) -> Decision:
        await asyncio.sleep(seconds)
        return await after(offer)

    return decide


@dataclasses.dataclass
class ReceivedOffer:
    """One Offer call as the scheduler saw it."""

    request: scheduler_pb2.OfferRequest
    caller: str  # the worker's peer id from the call metadata
    received_at: float  # time.perf_counter()
    decision: int | None = None  # scheduler_pb2.OfferDecision once answered
    reason: str = ""
    answered_at: float | None = None

    @property
    def accepted(self) -> bool:
        return self.decision == scheduler_pb2.OFFER_DECISION_ACCEPTED


class _Allocation(scheduler_pb2_grpc.AllocationServiceServicer):
    def __init__(self, owner: SchedulerDouble) -> None:
        self.owner = owner

    async def Offer(
        self, request: scheduler_pb2.OfferRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.OfferResponse:
        caller = dict(context.invocation_metadata() or ()).get("tendril-peer-id", "")
        received = ReceivedOffer(request=request, caller=str(caller), received_at=time.perf_counter())
        self.owner._record(received)
        decision, reason = await self.owner._decide(request)
        received.decision, received.reason, received.answered_at = decision, reason, time.perf_counter()
        return scheduler_pb2.OfferResponse(decision=decision, reason=reason)


class SchedulerDouble:
    """A scheduler's AllocationService on ``listen`` plus the client calls a scheduler makes."""

    def __init__(
        self,
        scheduler_id: str = "sched-test",
        *,
        decide: Decider | None = None,
        listen: str = "127.0.0.1:0",
        tls: TlsMaterial | None = None,
    ) -> None:
        self.id = scheduler_id
        # With ``tls`` (a scheduler's own certificate, CN = scheduler_id) it serves and calls
        # over mTLS; without, the process default (plaintext unless tls.configure ran).
        self.tls = tls
        self.offers: list[ReceivedOffer] = []
        self._decide_fn = decide or accept()
        self._changed = asyncio.Event()
        self._server = ServiceServer(
            listen,
            [
                Binding(
                    "tendril.scheduler.v1.AllocationService",
                    scheduler_pb2_grpc.add_AllocationServiceServicer_to_server,
                    _Allocation(self),
                )
            ],
            config_key="SchedulerDouble(listen=...)",
            credentials=tls.server_credentials() if tls is not None else None,
        )
        self._channels: dict[str, grpc.aio.Channel] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> SchedulerDouble:
        await self._server.start()
        return self

    async def stop(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        await self._server.stop(0)

    async def __aenter__(self) -> SchedulerDouble:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        """host:port of this scheduler's AllocationService."""
        return self._server.address

    def set_decider(self, decide: Decider) -> None:
        self._decide_fn = decide

    # -- offers received ---------------------------------------------------------------------

    def _record(self, offer: ReceivedOffer) -> None:
        self.offers.append(offer)
        self._changed.set()

    async def _decide(self, request: scheduler_pb2.OfferRequest) -> Decision:
        return await self._decide_fn(request)

    async def wait_offers(self, count: int, timeout: float = 30.0) -> list[ReceivedOffer]:
        """Wait until at least ``count`` offers arrived; returns all received so far."""
        deadline = time.monotonic() + timeout
        while len(self.offers) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.id}: {len(self.offers)} offers after {timeout}s, wanted {count}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except TimeoutError:
                continue
        return list(self.offers)

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        *,
        cpu: float = 1.0,
        memory_gib: float = 1.0,
        storage_gib: float = 0.0,
        gpu: int = 0,
        bid: float = 100.0,
        executors: Sequence[tuple[str, str]] = (("example", "echo"),),
        deadline_in: float = 30.0,
        request_id: str | None = None,
    ) -> arbiter_pb2.ResourceRequest:
        """A ResourceRequest naming this scheduler (id and address), deadline ``deadline_in`` from now."""
        return arbiter_pb2.ResourceRequest(
            request_id=request_id or f"{self.id}-{uuid.uuid4().hex[:12]}",
            scheduler=common_pb2.PeerRef(id=self.id, address=self.address),
            resources=common_pb2.Resources(cpu=cpu, memory_gib=memory_gib, storage_gib=storage_gib, gpu=gpu),
            executors=[common_pb2.ExecutorRef(executor_class=c, name=n) for c, n in executors],
            bid=bid,
            deadline=to_timestamp(time.time() + deadline_in),
        )

    def channel(self, address: str) -> grpc.aio.Channel:
        """The channel this scheduler calls ``address`` on (with its peer id); kept until stop()."""
        return self._channel(address)

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            credentials = self.tls.channel_credentials() if self.tls is not None else None
            self._channels[address] = open_channel(address, peer_id=self.id, credentials=credentials)
        return self._channels[address]

    async def publish(
        self,
        gateway: str,
        request: arbiter_pb2.ResourceRequest,
        *,
        topic: str = WORKER_TOPIC,
        min_delivered: int = 1,
        timeout: float = 30.0,
    ) -> float:
        """Publish ``request`` on the bus; returns the time.perf_counter() of the delivering Publish.

        A Publish that reached fewer than ``min_delivered`` subscribers (an arbiter still
        connecting) reached nobody who matters, so it is repeated until enough do.
        """
        payload = any_pb2.Any()
        payload.Pack(request)
        stub = gateway_pb2_grpc.BusServiceStub(self._channel(gateway))
        deadline = time.monotonic() + timeout
        while True:
            sent_at = time.perf_counter()
            reply = await stub.Publish(
                gateway_pb2.PublishRequest(topic=topic, sender=self.id, payload=payload), timeout=5
            )
            if reply.delivered >= min_delivered:
                return sent_at
            if time.monotonic() > deadline:
                raise TimeoutError(f"publish on {topic}: {reply.delivered} subscribers after {timeout}s")
            await asyncio.sleep(0.05)

    async def solicit(self, arbiter: str, request: arbiter_pb2.ResourceRequest, timeout: float = 30.0) -> Any:
        """Arbiter.Solicit as this scheduler; returns the final arbiter_pb2.Offer."""
        stub = arbiter_pb2_grpc.ArbiterServiceStub(self._channel(arbiter))
        reply = await stub.Solicit(arbiter_pb2.SolicitRequest(request=request), timeout=timeout)
        return reply.offer

    # -- leases (as the owner) ---------------------------------------------------------------

    def leases(self, address: str) -> lease_pb2_grpc.LeaseServiceStub:
        """A LeaseService stub calling as this scheduler."""
        return lease_pb2_grpc.LeaseServiceStub(self._channel(address))

    async def renew(self, address: str, lease_id: str) -> lease_pb2.Lease:
        reply = await self.leases(address).Renew(lease_pb2.RenewRequest(lease_id=lease_id), timeout=10)
        return reply.lease

    async def release(self, address: str, lease_id: str) -> lease_pb2.Lease:
        reply = await self.leases(address).Release(lease_pb2.ReleaseRequest(lease_id=lease_id), timeout=10)
        return reply.lease

    async def get(self, address: str, lease_id: str) -> lease_pb2.Lease:
        reply = await self.leases(address).Get(lease_pb2.GetRequest(lease_id=lease_id), timeout=10)
        return reply.lease

    async def wait_renewable(self, address: str, lease_id: str, timeout: float = 10.0) -> lease_pb2.Lease:
        """Poll Get until the lease is renewable, without renewing it: the worker's Arbiter
        confirms it right after ACCEPTED (a scheduler that renews at once needs no wait)."""
        deadline = time.monotonic() + timeout
        while True:
            lease = await self.get(address, lease_id)
            if lease.kind == lease_pb2.LEASE_KIND_RENEWABLE:
                return lease
            if time.monotonic() > deadline:
                raise TimeoutError(f"lease {lease_id} still temporary after {timeout}s")
            await asyncio.sleep(0.01)
