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

class OfferDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFER_DECISION_UNSPECIFIED: _ClassVar[OfferDecision]
    OFFER_DECISION_ACCEPTED: _ClassVar[OfferDecision]
    OFFER_DECISION_REJECTED: _ClassVar[OfferDecision]

class ProgressKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROGRESS_KIND_UNSPECIFIED: _ClassVar[ProgressKind]
    PROGRESS_KIND_BATCH: _ClassVar[ProgressKind]
    PROGRESS_KIND_METRICS: _ClassVar[ProgressKind]
    PROGRESS_KIND_UPDATE_SENT: _ClassVar[ProgressKind]
    PROGRESS_KIND_UPDATE_RECEIVED: _ClassVar[ProgressKind]
    PROGRESS_KIND_FINISHED: _ClassVar[ProgressKind]

class Directive(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTIVE_UNSPECIFIED: _ClassVar[Directive]
    DIRECTIVE_CONTINUE: _ClassVar[Directive]
    DIRECTIVE_SCHEDULE_UPDATE: _ClassVar[Directive]
    DIRECTIVE_DONE: _ClassVar[Directive]
OFFER_DECISION_UNSPECIFIED: OfferDecision
OFFER_DECISION_ACCEPTED: OfferDecision
OFFER_DECISION_REJECTED: OfferDecision
PROGRESS_KIND_UNSPECIFIED: ProgressKind
PROGRESS_KIND_BATCH: ProgressKind
PROGRESS_KIND_METRICS: ProgressKind
PROGRESS_KIND_UPDATE_SENT: ProgressKind
PROGRESS_KIND_UPDATE_RECEIVED: ProgressKind
PROGRESS_KIND_FINISHED: ProgressKind
DIRECTIVE_UNSPECIFIED: Directive
DIRECTIVE_CONTINUE: Directive
DIRECTIVE_SCHEDULE_UPDATE: Directive
DIRECTIVE_DONE: Directive

class OfferRequest(_message.Message):
    __slots__ = ("offer_id", "request_id", "worker", "lease_id", "resources", "price", "expires_at")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    request_id: str
    worker: _common_pb2.WorkerRecord
    lease_id: str
    resources: _common_pb2.Resources
    price: float
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, offer_id: _Optional[str] = ..., request_id: _Optional[str] = ..., worker: _Optional[_Union[_common_pb2.WorkerRecord, _Mapping]] = ..., lease_id: _Optional[str] = ..., resources: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., price: _Optional[float] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OfferResponse(_message.Message):
    __slots__ = ("decision", "reason")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    decision: OfferDecision
    reason: str
    def __init__(self, decision: _Optional[_Union[OfferDecision, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("job_id", "worker_id", "kind", "round", "batch_size", "batch_seconds", "metrics", "batches")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    kind: ProgressKind
    round: int
    batch_size: int
    batch_seconds: float
    metrics: _containers.ScalarMap[str, float]
    batches: int
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., kind: _Optional[_Union[ProgressKind, str]] = ..., round: _Optional[int] = ..., batch_size: _Optional[int] = ..., batch_seconds: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., batches: _Optional[int] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("directive", "batches_until_update", "round")
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_UNTIL_UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    directive: Directive
    batches_until_update: int
    round: int
    def __init__(self, directive: _Optional[_Union[Directive, str]] = ..., batches_until_update: _Optional[int] = ..., round: _Optional[int] = ...) -> None: ...

class AssignSliceRequest(_message.Message):
    __slots__ = ("job_id", "worker_id", "cached_slices")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CACHED_SLICES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    cached_slices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., cached_slices: _Optional[_Iterable[str]] = ...) -> None: ...

class SliceAssignment(_message.Message):
    __slots__ = ("dataset_id", "slice_name", "size_bytes", "sha256", "data_node_address", "epoch")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    slice_name: str
    size_bytes: int
    sha256: str
    data_node_address: str
    epoch: int
    def __init__(self, dataset_id: _Optional[str] = ..., slice_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., data_node_address: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class AssignSliceResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: SliceAssignment
    def __init__(self, assignment: _Optional[_Union[SliceAssignment, _Mapping]] = ...) -> None: ...
