"""Proto <-> core translations for the arbiter (messages only, no gRPC calls)."""

from __future__ import annotations

from tendril.arbiter.model import OfferRecord, OfferState, Request
from tendril.core.amounts import Amount
from tendril.core.timeutil import from_timestamp, to_timestamp
from tendril_proto.arbiter.v1 import arbiter_pb2

_STATES = {
    OfferState.PENDING: arbiter_pb2.OFFER_STATE_PENDING,
    OfferState.ACCEPTED: arbiter_pb2.OFFER_STATE_ACCEPTED,
    OfferState.REJECTED: arbiter_pb2.OFFER_STATE_REJECTED,
    OfferState.TIMED_OUT: arbiter_pb2.OFFER_STATE_TIMED_OUT,
    OfferState.FAILED: arbiter_pb2.OFFER_STATE_FAILED,
    OfferState.DROPPED: arbiter_pb2.OFFER_STATE_DROPPED,
}


def request_from_proto(msg: arbiter_pb2.ResourceRequest) -> Request:
    return Request(
        request_id=msg.request_id,
        scheduler_id=msg.scheduler.id,
        scheduler_address=msg.scheduler.address,
        resources=Amount.from_proto(msg.resources),
        executors=tuple((e.executor_class, e.name) for e in msg.executors),
        bid=msg.bid,
        deadline=from_timestamp(msg.deadline) if msg.HasField("deadline") else None,
    )


def offer_to_proto(record: OfferRecord) -> arbiter_pb2.Offer:
    return arbiter_pb2.Offer(
        offer_id=record.offer_id,
        request_id=record.request_id,
        scheduler_id=record.scheduler_id,
        lease_id=record.lease_id,
        resources=record.resources.to_proto(),
        price=record.price,
        score=record.score,
        state=_STATES[record.state],
        reason=record.reason,
        created_at=to_timestamp(record.created_at),
        decided_at=to_timestamp(record.decided_at),
    )
