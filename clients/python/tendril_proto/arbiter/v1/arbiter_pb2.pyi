import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tendril_proto.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OfferState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFER_STATE_UNSPECIFIED: _ClassVar[OfferState]
    OFFER_STATE_PENDING: _ClassVar[OfferState]
    OFFER_STATE_ACCEPTED: _ClassVar[OfferState]
    OFFER_STATE_REJECTED: _ClassVar[OfferState]
    OFFER_STATE_TIMED_OUT: _ClassVar[OfferState]
    OFFER_STATE_FAILED: _ClassVar[OfferState]
    OFFER_STATE_DROPPED: _ClassVar[OfferState]
OFFER_STATE_UNSPECIFIED: OfferState
OFFER_STATE_PENDING: OfferState
OFFER_STATE_ACCEPTED: OfferState
OFFER_STATE_REJECTED: OfferState
OFFER_STATE_TIMED_OUT: OfferState
OFFER_STATE_FAILED: OfferState
OFFER_STATE_DROPPED: OfferState

class ResourceRequest(_message.Message):
    __slots__ = ("request_id", "scheduler", "resources", "executors", "bid", "deadline")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    scheduler: _common_pb2.PeerRef
    resources: _common_pb2.Resources
    executors: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExecutorRef]
    bid: float
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., scheduler: _Optional[_Union[_common_pb2.PeerRef, _Mapping]] = ..., resources: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., executors: _Optional[_Iterable[_Union[_common_pb2.ExecutorRef, _Mapping]]] = ..., bid: _Optional[float] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "request_id", "scheduler_id", "lease_id", "resources", "price", "score", "state", "reason", "created_at", "decided_at")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    request_id: str
    scheduler_id: str
    lease_id: str
    resources: _common_pb2.Resources
    price: float
    score: float
    state: OfferState
    reason: str
    created_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, offer_id: _Optional[str] = ..., request_id: _Optional[str] = ..., scheduler_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., resources: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., price: _Optional[float] = ..., score: _Optional[float] = ..., state: _Optional[_Union[OfferState, str]] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SolicitRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: ResourceRequest
    def __init__(self, request: _Optional[_Union[ResourceRequest, _Mapping]] = ...) -> None: ...

class SolicitResponse(_message.Message):
    __slots__ = ("offer",)
    OFFER_FIELD_NUMBER: _ClassVar[int]
    offer: Offer
    def __init__(self, offer: _Optional[_Union[Offer, _Mapping]] = ...) -> None: ...

class ListOffersRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListOffersResponse(_message.Message):
    __slots__ = ("offers",)
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[Offer]
    def __init__(self, offers: _Optional[_Iterable[_Union[Offer, _Mapping]]] = ...) -> None: ...
