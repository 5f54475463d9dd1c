from tendril_proto.scheduler.v1 import scheduler_pb2 as _scheduler_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SliceInfo(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256", "num_sequences")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NUM_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    num_sequences: int
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., num_sequences: _Optional[int] = ...) -> None: ...

class AssetInfo(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    kind: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("dataset_id", "slices", "tokenizer", "seq_len", "vocab_size", "task", "eval_slices", "assets", "manifest_json")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    SEQ_LEN_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    EVAL_SLICES_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    slices: _containers.RepeatedCompositeFieldContainer[SliceInfo]
    tokenizer: str
    seq_len: int
    vocab_size: int
    task: str
    eval_slices: _containers.RepeatedCompositeFieldContainer[SliceInfo]
    assets: _containers.RepeatedCompositeFieldContainer[AssetInfo]
    manifest_json: str
    def __init__(self, dataset_id: _Optional[str] = ..., slices: _Optional[_Iterable[_Union[SliceInfo, _Mapping]]] = ..., tokenizer: _Optional[str] = ..., seq_len: _Optional[int] = ..., vocab_size: _Optional[int] = ..., task: _Optional[str] = ..., eval_slices: _Optional[_Iterable[_Union[SliceInfo, _Mapping]]] = ..., assets: _Optional[_Iterable[_Union[AssetInfo, _Mapping]]] = ..., manifest_json: _Optional[str] = ...) -> None: ...

class GetManifestRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class GetManifestResponse(_message.Message):
    __slots__ = ("manifest",)
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    manifest: Manifest
    def __init__(self, manifest: _Optional[_Union[Manifest, _Mapping]] = ...) -> None: ...

class FetchSliceRequest(_message.Message):
    __slots__ = ("dataset_id", "slice_name", "offset")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    slice_name: str
    offset: int
    def __init__(self, dataset_id: _Optional[str] = ..., slice_name: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FetchSliceResponse(_message.Message):
    __slots__ = ("offset", "data", "total_bytes")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    total_bytes: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class OpenJobRequest(_message.Message):
    __slots__ = ("job_id", "worker_id", "coordinator_address", "prefetch")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    coordinator_address: str
    prefetch: int
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., coordinator_address: _Optional[str] = ..., prefetch: _Optional[int] = ...) -> None: ...

class OpenJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NextSliceRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class NextSliceResponse(_message.Message):
    __slots__ = ("cache_path", "assignment", "wait_seconds")
    CACHE_PATH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    cache_path: str
    assignment: _scheduler_pb2.SliceAssignment
    wait_seconds: float
    def __init__(self, cache_path: _Optional[str] = ..., assignment: _Optional[_Union[_scheduler_pb2.SliceAssignment, _Mapping]] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class CloseJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CloseJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("cache_hits", "cache_misses", "cache_bytes", "cache_capacity_bytes", "bytes_downloaded", "wait_seconds", "sha256_mismatches", "open_jobs", "resumed_fetches", "evictions")
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_DOWNLOADED_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHA256_MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    OPEN_JOBS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FETCHES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    cache_hits: int
    cache_misses: int
    cache_bytes: int
    cache_capacity_bytes: int
    bytes_downloaded: int
    wait_seconds: float
    sha256_mismatches: int
    open_jobs: int
    resumed_fetches: int
    evictions: int
    def __init__(self, cache_hits: _Optional[int] = ..., cache_misses: _Optional[int] = ..., cache_bytes: _Optional[int] = ..., cache_capacity_bytes: _Optional[int] = ..., bytes_downloaded: _Optional[int] = ..., wait_seconds: _Optional[float] = ..., sha256_mismatches: _Optional[int] = ..., open_jobs: _Optional[int] = ..., resumed_fetches: _Optional[int] = ..., evictions: _Optional[int] = ...) -> None: ...

class DatasetRecord(_message.Message):
    __slots__ = ("dataset_id", "address", "manifest")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    address: str
    manifest: Manifest
    def __init__(self, dataset_id: _Optional[str] = ..., address: _Optional[str] = ..., manifest: _Optional[_Union[Manifest, _Mapping]] = ...) -> None: ...
