"""The arbiter's subscription to the gateway bus, kept alive across gateway restarts.

Every ``tendril.arbiter.v1.ResourceRequest`` published on the topic is handed to
``on_request``. When the stream breaks (gateway down, restarted, unreachable) the follower
reconnects with exponential backoff and jitter; a successful subscription resets the backoff.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import grpc

from tendril.core.channel import open_channel
from tendril.core.logs import get_logger
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

log = get_logger("tendril.arbiter.bus")


class BusFollower:
    def __init__(
        self,
        address: str,
        topic: str,
        *,
        peer_id: str,
        on_request: Callable[[arbiter_pb2.ResourceRequest], None],
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        verify_sender: bool = False,
    ) -> None:
        self.address = address
        self.topic = topic
        self.peer_id = peer_id
        self.on_request = on_request
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # Under mTLS the gateway stamps each envelope with the publisher's certificate name:
        # a request naming another scheduler than its publisher is a forgery and is dropped.
        self.verify_sender = verify_sender
        self.subscribed = asyncio.Event()  # set while a subscription is live
        self.received = 0
        self.ignored = 0  # messages on the topic that were not ResourceRequests
        self.forged = 0  # requests whose scheduler.id was not their publisher (verify_sender)
        self.reconnects = 0
        self._live = False

    async def run(self) -> None:
        """Follow the topic until cancelled."""
        backoff = self.backoff_initial
        while True:
            self._live = False
            try:
                await self._follow_once()
                reason = "the gateway ended the stream"
            except grpc.aio.AioRpcError as exc:
                reason = f"{exc.code().name}: {exc.details()}"
            self.subscribed.clear()
            if self._live:
                backoff = self.backoff_initial  # it worked until now: start over gently
            delay = backoff * (0.5 + random.random())
            log.warning(
                "bus.disconnected", gateway=self.address, topic=self.topic, reason=reason, retry_in=round(delay, 3)
            )
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.backoff_max)
            self.reconnects += 1

    async def _follow_once(self) -> None:
        async with open_channel(self.address, peer_id=self.peer_id) as channel:
            stub = gateway_pb2_grpc.BusServiceStub(channel)
            call = stub.Subscribe(gateway_pb2.SubscribeRequest(topic=self.topic, subscriber=self.peer_id))
            # The gateway sends initial metadata once the subscription exists.
            await call.initial_metadata()
            if call.done():
                # NOTE: a call that failed (gateway unreachable) also "returns" empty initial
                # metadata; reading it raises its real error.
                await call.read()
                return
            self._live = True
            self.subscribed.set()
            log.info("bus.subscribed", gateway=self.address, topic=self.topic)
            async for message in call:
                self._handle(message.envelope)

    def _handle(self, envelope: gateway_pb2.Envelope) -> None:
        self.received += 1
        if not envelope.payload.Is(arbiter_pb2.ResourceRequest.DESCRIPTOR):
            self.ignored += 1
            log.warning(
                "bus.unexpected_payload",
                topic=self.topic,
                sender=envelope.sender,
                type_url=envelope.payload.type_url,
                hint="publish tendril.arbiter.v1.ResourceRequest messages on this topic",
            )
            return
        request = arbiter_pb2.ResourceRequest()
        envelope.payload.Unpack(request)
        if self.verify_sender and request.scheduler.id != envelope.sender:
            self.forged += 1
            log.warning(
                "bus.sender_mismatch",
                request_id=request.request_id,
                scheduler_id=request.scheduler.id,
                sender=envelope.sender,
                hint="under mTLS a scheduler publishes requests only in its own name (its certificate's CN)",
            )
            return
        try:
            self.on_request(request)
        except Exception as exc:  # one bad message must not end the subscription
            log.warning("bus.request_not_taken", request_id=request.request_id, error=str(exc))
