import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tendril_proto.job.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("job_toml",)
    JOB_TOML_FIELD_NUMBER: _ClassVar[int]
    job_toml: str
    def __init__(self, job_toml: _Optional[str] = ...) -> None: ...

class OfferTaken(_message.Message):
    __slots__ = ("worker_id", "lease_id", "offers")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_id: str
    offers: int
    def __init__(self, worker_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., offers: _Optional[int] = ...) -> None: ...

class Dispatched(_message.Message):
    __slots__ = ("job_id", "worker_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("job_id", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    values: _containers.ScalarMap[str, float]
    def __init__(self, job_id: _Optional[str] = ..., values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class LogText(_message.Message):
    __slots__ = ("job_id", "text")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    text: str
    def __init__(self, job_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class Retry(_message.Message):
    __slots__ = ("job_id", "worker_id", "reason", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    reason: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., reason: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class ResultsFetched(_message.Message):
    __slots__ = ("path", "manifest")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    path: str
    manifest: _job_pb2.ResultsManifest
    def __init__(self, path: _Optional[str] = ..., manifest: _Optional[_Union[_job_pb2.ResultsManifest, _Mapping]] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("job_id", "worker_id", "state", "exit_code", "reason", "results_path", "manifest")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESULTS_PATH_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    state: _job_pb2.JobState
    exit_code: int
    reason: str
    results_path: str
    manifest: _job_pb2.ResultsManifest
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., results_path: _Optional[str] = ..., manifest: _Optional[_Union[_job_pb2.ResultsManifest, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("at", "offer_taken", "dispatched", "progress", "log", "retry", "results_fetched", "done")
    AT_FIELD_NUMBER: _ClassVar[int]
    OFFER_TAKEN_FIELD_NUMBER: _ClassVar[int]
    DISPATCHED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FETCHED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    offer_taken: OfferTaken
    dispatched: Dispatched
    progress: Progress
    log: LogText
    retry: Retry
    results_fetched: ResultsFetched
    done: Done
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., offer_taken: _Optional[_Union[OfferTaken, _Mapping]] = ..., dispatched: _Optional[_Union[Dispatched, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., log: _Optional[_Union[LogText, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., results_fetched: _Optional[_Union[ResultsFetched, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ...) -> None: ...
