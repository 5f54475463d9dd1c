"""Thin gRPC servicers over the bus and registry stores (:mod:`tendril.gateway.store`): translate messages.

They also apply the per-caller rate limits (:mod:`tendril.gateway.limits`), since the caller's
identity comes from the call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from tendril.core.errors import ErrorKind
from tendril.core.identity import caller_id, certificate_id
from tendril.core.timeutil import now, to_timestamp
from tendril.gateway.errors import GatewayError, GatewayReason
from tendril.gateway.limits import RateLimiter
from tendril.gateway.registry import Caller, RecordEventType
from tendril.gateway.store import BusStore, RegistryStore, messages, record_to_proto
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

__all__ = ["BusServicer", "RegistryServicer", "record_to_proto"]

_EVENT_TYPES = {
    RecordEventType.EXISTING: gateway_pb2.RECORD_EVENT_TYPE_EXISTING,
    RecordEventType.PUT: gateway_pb2.RECORD_EVENT_TYPE_PUT,
    RecordEventType.DELETED: gateway_pb2.RECORD_EVENT_TYPE_DELETED,
    RecordEventType.EXPIRED: gateway_pb2.RECORD_EVENT_TYPE_EXPIRED,
}


def rate_key(context: grpc.aio.ServicerContext) -> str:
    """Whose token bucket a call takes from: certificate name, else peer id, else the caller's host."""
    name = caller_id(context)
    if name:
        return name
    # NOTE: "ipv4:127.0.0.1:5555" -> "ipv4:127.0.0.1": a new connection is not a new bucket.
    return (context.peer() or "").rpartition(":")[0]


class BusServicer(gateway_pb2_grpc.BusServiceServicer):
    def __init__(self, bus: BusStore, *, limiter: RateLimiter | None = None) -> None:
        self.bus = bus
        self.limiter = limiter

    async def Publish(
        self, request: gateway_pb2.PublishRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PublishResponse:
        if not request.HasField("payload"):
            raise GatewayError(
                ErrorKind.INVALID_ARGUMENT,
                "payload is missing; pack the message in a google.protobuf.Any "
                "(e.g. a tendril.arbiter.v1.ResourceRequest)",
                reason=GatewayReason.PAYLOAD_MISSING,
            )
        if self.limiter is not None:
            self.limiter.take(rate_key(context))
        # NOTE: under mTLS the sender is the name on the caller's certificate, whatever the
        # request says: subscribers (the arbiter) may then trust it as the publisher's identity.
        envelope = gateway_pb2.Envelope(
            topic=request.topic,
            sender=certificate_id(context) or request.sender or caller_id(context),
            payload=request.payload,
            published_at=to_timestamp(now()),
        )
        return gateway_pb2.PublishResponse(delivered=await self.bus.publish(request.topic, envelope))

    async def Subscribe(
        self, request: gateway_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.SubscribeResponse]:
        sub = await self.bus.subscribe(request.topic, request.subscriber or caller_id(context) or context.peer())
        try:
            # NOTE: initial metadata goes out only once the subscription exists, so a client
            # that awaits it knows every later Publish reaches it.
            await context.send_initial_metadata(())
            async for envelope in messages(sub):
                yield gateway_pb2.SubscribeResponse(envelope=envelope)
        finally:
            self.bus.unsubscribe(request.topic, sub)


class RegistryServicer(gateway_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: RegistryStore, *, limiter: RateLimiter | None = None) -> None:
        self.registry = registry
        self.limiter = limiter

    async def Put(self, request: gateway_pb2.PutRequest, context: grpc.aio.ServicerContext) -> gateway_pb2.PutResponse:
        if self.limiter is not None:
            self.limiter.take(rate_key(context))
        caller = Caller(identity=certificate_id(context), secret=request.secret)
        rec = request.record
        payload = rec.payload if rec.HasField("payload") else None
        # NOTE: the size counted against the cap is the record as stored (owner included, the
        # gateway's own fields aside), so a listed record is at most the cap plus a fixed overhead.
        counted = gateway_pb2.Record(
            kind=rec.kind, id=rec.id, payload=payload, ttl_seconds=rec.ttl_seconds, owner=caller.identity
        )
        stored = await self.registry.put_as(
            rec.kind, rec.id, payload, rec.ttl_seconds, caller=caller, size=counted.ByteSize()
        )
        return gateway_pb2.PutResponse(record=record_to_proto(stored.entry), secret=stored.secret)

    async def Get(self, request: gateway_pb2.GetRequest, context: grpc.aio.ServicerContext) -> gateway_pb2.GetResponse:
        return gateway_pb2.GetResponse(record=record_to_proto(await self.registry.get(request.kind, request.id)))

    async def List(
        self, request: gateway_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ListResponse:
        page, next_token = await self.registry.page(request.kind, request.page_size, request.page_token)
        return gateway_pb2.ListResponse(records=[record_to_proto(e) for e in page], next_page_token=next_token)

    async def Delete(
        self, request: gateway_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.DeleteResponse:
        await self.registry.delete(
            request.kind, request.id, caller=Caller(identity=certificate_id(context), secret=request.secret)
        )
        return gateway_pb2.DeleteResponse()

    async def Watch(
        self, request: gateway_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.WatchResponse]:
        watch = await self.registry.watch(request.kind, name=caller_id(context) or context.peer())
        async for event in watch.relay(context):
            yield gateway_pb2.WatchResponse(type=_EVENT_TYPES[event.type], record=record_to_proto(event.entry))
