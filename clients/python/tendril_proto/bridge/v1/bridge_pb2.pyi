from google.protobuf import struct_pb2 as _struct_pb2
from tendril_proto.common.v1 import common_pb2 as _common_pb2
from tendril_proto.paramserver.v1 import paramserver_pb2 as _paramserver_pb2
from tendril_proto.scheduler.v1 import scheduler_pb2 as _scheduler_pb2
from tendril_proto.tensor.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetJobRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job_id", "worker_id", "executor", "config", "work_dir", "results_dir")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    WORK_DIR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_DIR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    executor: _common_pb2.ExecutorRef
    config: _struct_pb2.Struct
    work_dir: str
    results_dir: str
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., executor: _Optional[_Union[_common_pb2.ExecutorRef, _Mapping]] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., work_dir: _Optional[str] = ..., results_dir: _Optional[str] = ...) -> None: ...

class FetchResourceRequest(_message.Message):
    __slots__ = ("uri", "dest", "sha256")
    URI_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    uri: str
    dest: str
    sha256: str
    def __init__(self, uri: _Optional[str] = ..., dest: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class FetchResourceResponse(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class NextSliceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NextSliceResponse(_message.Message):
    __slots__ = ("path", "assignment", "wait_seconds")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    path: str
    assignment: _scheduler_pb2.SliceAssignment
    wait_seconds: float
    def __init__(self, path: _Optional[str] = ..., assignment: _Optional[_Union[_scheduler_pb2.SliceAssignment, _Mapping]] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class SendUpdateRequest(_message.Message):
    __slots__ = ("path", "round", "weight", "fragment", "digest")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAGMENT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    path: str
    round: int
    weight: float
    fragment: int
    digest: _tensor_pb2.Digest
    def __init__(self, path: _Optional[str] = ..., round: _Optional[int] = ..., weight: _Optional[float] = ..., fragment: _Optional[int] = ..., digest: _Optional[_Union[_tensor_pb2.Digest, _Mapping]] = ...) -> None: ...

class SendUpdateResponse(_message.Message):
    __slots__ = ("bytes_sent", "seconds")
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    bytes_sent: int
    seconds: float
    def __init__(self, bytes_sent: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class ReceiveUpdateRequest(_message.Message):
    __slots__ = ("round", "path", "timeout_seconds", "fragment", "reuse_files")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAGMENT_FIELD_NUMBER: _ClassVar[int]
    REUSE_FILES_FIELD_NUMBER: _ClassVar[int]
    round: int
    path: str
    timeout_seconds: float
    fragment: int
    reuse_files: bool
    def __init__(self, round: _Optional[int] = ..., path: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., fragment: _Optional[int] = ..., reuse_files: _Optional[bool] = ...) -> None: ...

class ReceiveUpdateResponse(_message.Message):
    __slots__ = ("path", "bytes_received", "seconds", "contributors")
    PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    path: str
    bytes_received: int
    seconds: float
    contributors: int
    def __init__(self, path: _Optional[str] = ..., bytes_received: _Optional[int] = ..., seconds: _Optional[float] = ..., contributors: _Optional[int] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: _scheduler_pb2.ReportProgressRequest
    def __init__(self, progress: _Optional[_Union[_scheduler_pb2.ReportProgressRequest, _Mapping]] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("directive",)
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    directive: _scheduler_pb2.ReportProgressResponse
    def __init__(self, directive: _Optional[_Union[_scheduler_pb2.ReportProgressResponse, _Mapping]] = ...) -> None: ...

class PublishParametersRequest(_message.Message):
    __slots__ = ("path", "fragment")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FRAGMENT_FIELD_NUMBER: _ClassVar[int]
    path: str
    fragment: int
    def __init__(self, path: _Optional[str] = ..., fragment: _Optional[int] = ...) -> None: ...

class PublishParametersResponse(_message.Message):
    __slots__ = ("accepted", "round")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    round: int
    def __init__(self, accepted: _Optional[bool] = ..., round: _Optional[int] = ...) -> None: ...

class FetchParametersRequest(_message.Message):
    __slots__ = ("path", "fragment")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FRAGMENT_FIELD_NUMBER: _ClassVar[int]
    path: str
    fragment: int
    def __init__(self, path: _Optional[str] = ..., fragment: _Optional[int] = ...) -> None: ...

class FetchParametersResponse(_message.Message):
    __slots__ = ("path", "round")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    path: str
    round: int
    def __init__(self, path: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class OpenRunRequest(_message.Message):
    __slots__ = ("run_id", "expected_workers", "quorum", "round_timeout_seconds", "outer_lr", "outer_momentum", "codec", "rounds")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    ROUND_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OUTER_LR_FIELD_NUMBER: _ClassVar[int]
    OUTER_MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    expected_workers: int
    quorum: int
    round_timeout_seconds: float
    outer_lr: float
    outer_momentum: float
    codec: _tensor_pb2.Codec
    rounds: int
    def __init__(self, run_id: _Optional[str] = ..., expected_workers: _Optional[int] = ..., quorum: _Optional[int] = ..., round_timeout_seconds: _Optional[float] = ..., outer_lr: _Optional[float] = ..., outer_momentum: _Optional[float] = ..., codec: _Optional[_Union[_tensor_pb2.Codec, str]] = ..., rounds: _Optional[int] = ...) -> None: ...

class OpenRunResponse(_message.Message):
    __slots__ = ("run_id", "round", "resumed")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    resumed: bool
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ..., resumed: _Optional[bool] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _paramserver_pb2.RoundStatus
    def __init__(self, status: _Optional[_Union[_paramserver_pb2.RoundStatus, _Mapping]] = ...) -> None: ...

class CloseRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class CloseRunResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
