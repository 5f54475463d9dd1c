from tendril_proto.tensor.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoundState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUND_STATE_UNSPECIFIED: _ClassVar[RoundState]
    ROUND_STATE_OPEN: _ClassVar[RoundState]
    ROUND_STATE_CLOSED: _ClassVar[RoundState]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_OPEN: _ClassVar[RunState]
    RUN_STATE_FINISHED: _ClassVar[RunState]
    RUN_STATE_CLOSED: _ClassVar[RunState]
ROUND_STATE_UNSPECIFIED: RoundState
ROUND_STATE_OPEN: RoundState
ROUND_STATE_CLOSED: RoundState
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_OPEN: RunState
RUN_STATE_FINISHED: RunState
RUN_STATE_CLOSED: RunState

class PushUpdateRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _tensor_pb2.StreamMessage
    def __init__(self, message: _Optional[_Union[_tensor_pb2.StreamMessage, _Mapping]] = ...) -> None: ...

class PushUpdateResponse(_message.Message):
    __slots__ = ("committed", "received_bytes", "contributors")
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    committed: bool
    received_bytes: int
    contributors: int
    def __init__(self, committed: _Optional[bool] = ..., received_bytes: _Optional[int] = ..., contributors: _Optional[int] = ...) -> None: ...

class PullUpdateRequest(_message.Message):
    __slots__ = ("job_id", "round", "codec", "offset", "timeout_seconds", "run_id", "worker_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    round: int
    codec: _tensor_pb2.Codec
    offset: int
    timeout_seconds: float
    run_id: str
    worker_id: str
    def __init__(self, job_id: _Optional[str] = ..., round: _Optional[int] = ..., codec: _Optional[_Union[_tensor_pb2.Codec, str]] = ..., offset: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., run_id: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class PullUpdateResponse(_message.Message):
    __slots__ = ("message", "contributors")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    message: _tensor_pb2.StreamMessage
    contributors: int
    def __init__(self, message: _Optional[_Union[_tensor_pb2.StreamMessage, _Mapping]] = ..., contributors: _Optional[int] = ...) -> None: ...

class PushParametersRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _tensor_pb2.StreamMessage
    def __init__(self, message: _Optional[_Union[_tensor_pb2.StreamMessage, _Mapping]] = ...) -> None: ...

class PushParametersResponse(_message.Message):
    __slots__ = ("accepted", "round")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    round: int
    def __init__(self, accepted: _Optional[bool] = ..., round: _Optional[int] = ...) -> None: ...

class PullParametersRequest(_message.Message):
    __slots__ = ("job_id", "offset", "run_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    offset: int
    run_id: str
    def __init__(self, job_id: _Optional[str] = ..., offset: _Optional[int] = ..., run_id: _Optional[str] = ...) -> None: ...

class PullParametersResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _tensor_pb2.StreamMessage
    def __init__(self, message: _Optional[_Union[_tensor_pb2.StreamMessage, _Mapping]] = ...) -> None: ...

class GetRoundRequest(_message.Message):
    __slots__ = ("job_id", "run_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    run_id: str
    def __init__(self, job_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class GetRoundResponse(_message.Message):
    __slots__ = ("job_id", "round", "state", "committed_workers", "expected_workers", "pushes_in_flight", "run_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    PUSHES_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    round: int
    state: RoundState
    committed_workers: _containers.RepeatedScalarFieldContainer[str]
    expected_workers: _containers.RepeatedScalarFieldContainer[str]
    pushes_in_flight: int
    run_id: str
    def __init__(self, job_id: _Optional[str] = ..., round: _Optional[int] = ..., state: _Optional[_Union[RoundState, str]] = ..., committed_workers: _Optional[_Iterable[str]] = ..., expected_workers: _Optional[_Iterable[str]] = ..., pushes_in_flight: _Optional[int] = ..., run_id: _Optional[str] = ...) -> None: ...

class OpenJobRequest(_message.Message):
    __slots__ = ("job_id", "expected_workers", "quorum", "round_timeout_seconds", "outer_lr", "outer_momentum", "codec", "rounds", "run_id", "owner_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    ROUND_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTER_LR_FIELD_NUMBER: _ClassVar[int]
    OUTER_MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    expected_workers: int
    quorum: int
    round_timeout_seconds: float
    outer_lr: float
    outer_momentum: float
    codec: _tensor_pb2.Codec
    rounds: int
    run_id: str
    owner_id: str
    def __init__(self, job_id: _Optional[str] = ..., expected_workers: _Optional[int] = ..., quorum: _Optional[int] = ..., round_timeout_seconds: _Optional[float] = ..., outer_lr: _Optional[float] = ..., outer_momentum: _Optional[float] = ..., codec: _Optional[_Union[_tensor_pb2.Codec, str]] = ..., rounds: _Optional[int] = ..., run_id: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class OpenJobResponse(_message.Message):
    __slots__ = ("round", "resumed")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    round: int
    resumed: bool
    def __init__(self, round: _Optional[int] = ..., resumed: _Optional[bool] = ...) -> None: ...

class CloseJobRequest(_message.Message):
    __slots__ = ("job_id", "purge", "run_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    purge: bool
    run_id: str
    def __init__(self, job_id: _Optional[str] = ..., purge: _Optional[bool] = ..., run_id: _Optional[str] = ...) -> None: ...

class CloseJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRoundRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RoundStatus(_message.Message):
    __slots__ = ("run_id", "round", "state", "committed_workers", "expected_workers", "rounds", "run_state", "expected_worker_ids")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WORKER_IDS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    state: RoundState
    committed_workers: _containers.RepeatedScalarFieldContainer[str]
    expected_workers: int
    rounds: int
    run_state: RunState
    expected_worker_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ..., state: _Optional[_Union[RoundState, str]] = ..., committed_workers: _Optional[_Iterable[str]] = ..., expected_workers: _Optional[int] = ..., rounds: _Optional[int] = ..., run_state: _Optional[_Union[RunState, str]] = ..., expected_worker_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SetExpectedWorkersRequest(_message.Message):
    __slots__ = ("run_id", "worker_ids")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_IDS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    worker_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., worker_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SetExpectedWorkersResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: RoundStatus
    def __init__(self, status: _Optional[_Union[RoundStatus, _Mapping]] = ...) -> None: ...

class WatchRoundResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: RoundStatus
    def __init__(self, status: _Optional[_Union[RoundStatus, _Mapping]] = ...) -> None: ...
