import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_EVENT_TYPE_UNSPECIFIED: _ClassVar[RecordEventType]
    RECORD_EVENT_TYPE_EXISTING: _ClassVar[RecordEventType]
    RECORD_EVENT_TYPE_PUT: _ClassVar[RecordEventType]
    RECORD_EVENT_TYPE_DELETED: _ClassVar[RecordEventType]
    RECORD_EVENT_TYPE_EXPIRED: _ClassVar[RecordEventType]
RECORD_EVENT_TYPE_UNSPECIFIED: RecordEventType
RECORD_EVENT_TYPE_EXISTING: RecordEventType
RECORD_EVENT_TYPE_PUT: RecordEventType
RECORD_EVENT_TYPE_DELETED: RecordEventType
RECORD_EVENT_TYPE_EXPIRED: RecordEventType

class Envelope(_message.Message):
    __slots__ = ("topic", "sender", "payload", "published_at")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    topic: str
    sender: str
    payload: _any_pb2.Any
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, topic: _Optional[str] = ..., sender: _Optional[str] = ..., payload: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("topic", "sender", "payload")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    topic: str
    sender: str
    payload: _any_pb2.Any
    def __init__(self, topic: _Optional[str] = ..., sender: _Optional[str] = ..., payload: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("delivered",)
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    delivered: int
    def __init__(self, delivered: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("topic", "subscriber")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    topic: str
    subscriber: str
    def __init__(self, topic: _Optional[str] = ..., subscriber: _Optional[str] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: Envelope
    def __init__(self, envelope: _Optional[_Union[Envelope, _Mapping]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("kind", "id", "payload", "ttl_seconds", "expires_at", "version", "owner", "owner_secret_sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    OWNER_SECRET_SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    payload: _any_pb2.Any
    ttl_seconds: float
    expires_at: _timestamp_pb2.Timestamp
    version: int
    owner: str
    owner_secret_sha256: bytes
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., payload: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., ttl_seconds: _Optional[float] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., owner: _Optional[str] = ..., owner_secret_sha256: _Optional[bytes] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("record", "secret")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    record: Record
    secret: str
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("record", "secret")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    record: Record
    secret: str
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: Record
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind", "page_size", "page_token")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    page_size: int
    page_token: str
    def __init__(self, kind: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("kind", "id", "secret")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    secret: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("type", "record")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    type: RecordEventType
    record: Record
    def __init__(self, type: _Optional[_Union[RecordEventType, str]] = ..., record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...
