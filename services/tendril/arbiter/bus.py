"""The arbiter's subscription to the gateway bus, kept alive across gateway restarts.

Every ``tendril.arbiter.v1.ResourceRequest`` published on the topic is handed to
``on_request``. When the stream breaks (gateway down, restarted, unreachable) the follower
reconnects on a fresh channel with exponential backoff and jitter
(:func:`tendril.core.calls.follow`); a successful subscription resets the backoff. Given
several gateways (:class:`~tendril.core.gateways.Gateways`), each break moves it to the next
one, so a dead gateway costs one backoff delay, not the subscription.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

import grpc

from tendril.core.calls import follow
from tendril.core.channel import open_channel
from tendril.core.gateways import Gateways
from tendril.core.logs import get_logger
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_sdk.retry import RetryPolicy

log = get_logger("tendril.arbiter.bus")


class BusFollower:
    def __init__(
        self,
        address: str | Iterable[str],
        topic: str,
        *,
        peer_id: str,
        on_request: Callable[[arbiter_pb2.ResourceRequest], None],
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        verify_sender: bool = False,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.gateways = Gateways(address, peer_id=peer_id)
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
        self._rand = rand
        self._following = self.gateways.current  # the gateway of the stream open now (or last)

    @property
    def address(self) -> str:
        """The gateway in use."""
        return self.gateways.current

    async def run(self) -> None:
        """Follow the topic until cancelled."""
        # Every failure is a break: the gateway may come back whatever it answered last.
        policy = RetryPolicy(
            codes=frozenset(grpc.StatusCode),
            attempts=None,
            initial_backoff=self.backoff_initial,
            max_backoff=self.backoff_max,
            jitter=0.5,
        )
        await follow(
            self._follow_once,
            name="bus",
            peer=f"gateway at {self.gateways} topic {self.topic}",
            policy=policy,
            log=log,
            on_break=self._broken,
            rand=self._rand,
        )

    def _broken(self) -> None:
        self.subscribed.clear()
        self.reconnects += 1
        self.gateways.failed(self._following, "the subscription broke")

    async def _follow_once(self, live: Callable[[], None]) -> None:
        self._following = self.gateways.current
        async with open_channel(self._following, peer_id=self.peer_id) as channel:
            stub = gateway_pb2_grpc.BusServiceStub(channel)
            call = stub.Subscribe(gateway_pb2.SubscribeRequest(topic=self.topic, subscriber=self.peer_id))
            # The gateway sends initial metadata once the subscription exists.
            await call.initial_metadata()
            if call.done():
                # NOTE: a call that failed (gateway unreachable) also "returns" empty initial
                # metadata; reading it raises its real error.
                await call.read()
                return
            live()
            self.subscribed.set()
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
