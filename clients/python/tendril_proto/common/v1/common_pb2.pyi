from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Resources(_message.Message):
    __slots__ = ("cpu", "memory_gib", "storage_gib", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GIB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_GIB_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    memory_gib: float
    storage_gib: float
    gpu: int
    def __init__(self, cpu: _Optional[float] = ..., memory_gib: _Optional[float] = ..., storage_gib: _Optional[float] = ..., gpu: _Optional[int] = ...) -> None: ...

class ExecutorRef(_message.Message):
    __slots__ = ("executor_class", "name")
    EXECUTOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    executor_class: str
    name: str
    def __init__(self, executor_class: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class PeerRef(_message.Message):
    __slots__ = ("id", "address")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class WorkerEndpoints(_message.Message):
    __slots__ = ("arbiter", "lease", "job", "data_fetcher", "parameter_server")
    ARBITER_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FETCHER_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_SERVER_FIELD_NUMBER: _ClassVar[int]
    arbiter: str
    lease: str
    job: str
    data_fetcher: str
    parameter_server: str
    def __init__(self, arbiter: _Optional[str] = ..., lease: _Optional[str] = ..., job: _Optional[str] = ..., data_fetcher: _Optional[str] = ..., parameter_server: _Optional[str] = ...) -> None: ...

class WorkerRecord(_message.Message):
    __slots__ = ("worker_id", "endpoints", "resources", "executors", "price", "version")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    endpoints: WorkerEndpoints
    resources: Resources
    executors: _containers.RepeatedCompositeFieldContainer[ExecutorRef]
    price: float
    version: str
    def __init__(self, worker_id: _Optional[str] = ..., endpoints: _Optional[_Union[WorkerEndpoints, _Mapping]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., executors: _Optional[_Iterable[_Union[ExecutorRef, _Mapping]]] = ..., price: _Optional[float] = ..., version: _Optional[str] = ...) -> None: ...
