"""Tendril's Python SDK: what an executor needs to talk to its job bridge, and the wire's reasons.

Installable without the worker (``pip install ./clients/python``; it needs only grpcio,
grpcio-status and protobuf). The pieces:

* :class:`BridgeClient` (``tendril_sdk.bridge``) — one async method per JobBridgeService RPC,
  the job's token on every call, transient failures retried, failures raised as
  :class:`BridgeError`;
* :class:`BridgeError`, :func:`error_reason` (``tendril_sdk.errors``) — the status code and
  the stable ErrorInfo reason of a failed call;
* :class:`BridgeReason`, :class:`LeaseReason`, :class:`JobReason`, ... (``tendril_sdk.reasons``)
  — every reason on the wire, one ``StrEnum`` per service, so any client (an executor, a
  scheduler) matches ``LeaseReason.LEASE_EXPIRED`` without the worker installed;
* :class:`JobDescriptor` (``tendril_sdk.job``) — job.json, typed;
* :data:`TRANSIENT_CODES`, :class:`Backoff`, :class:`RetryPolicy`, :func:`retry`
  (``tendril_sdk.retry``) — when and how to try a call again;
* :class:`Reusable`, :func:`handoff_folder` (``tendril_sdk.files``) — model-sized files an
  executor and its bridge write again in place, round after round, in memory where they fit;
* ``tendril_sdk.tracing.setup(name)`` — continue the dispatch's trace (extra ``[tracing]``).
"""

from tendril_sdk.bridge import (
    CODECS,
    DEFAULT_RETRY,
    SOCKET_ENV,
    TOKEN_ENV,
    BridgeClient,
    Directive,
    DirectiveKind,
    FetchedParameters,
    FetchedResource,
    Job,
    OpenedRun,
    ProgressKind,
    PublishedParameters,
    ReceivedUpdate,
    RunState,
    RunStatus,
    SentUpdate,
    Slice,
)
from tendril_sdk.errors import BridgeError, ExecutorEnvError, error_metadata, error_reason, error_retry_delay
from tendril_sdk.files import Reusable, handoff_folder
from tendril_sdk.job import (
    ERROR_FILE_NAME,
    JOB_JSON_ENV,
    ExecutorRef,
    JobDescriptor,
    JobDescriptorError,
    read_error,
    write_error,
)
from tendril_sdk.reasons import (
    ArbiterReason,
    BridgeReason,
    DataNodeReason,
    FetcherReason,
    GatewayReason,
    JobReason,
    LeaseReason,
    ParamserverReason,
    SchedulerReason,
    StreamReason,
    SubmitReason,
)
from tendril_sdk.retry import NO_RETRY, STREAM_BREAK_CODES, TRANSIENT_CODES, Backoff, RetryPolicy, retry

__all__ = [
    "CODECS",
    "DEFAULT_RETRY",
    "ERROR_FILE_NAME",
    "JOB_JSON_ENV",
    "NO_RETRY",
    "SOCKET_ENV",
    "STREAM_BREAK_CODES",
    "TOKEN_ENV",
    "TRANSIENT_CODES",
    "ArbiterReason",
    "Backoff",
    "BridgeClient",
    "BridgeError",
    "BridgeReason",
    "DataNodeReason",
    "Directive",
    "DirectiveKind",
    "ExecutorEnvError",
    "ExecutorRef",
    "FetchedParameters",
    "FetchedResource",
    "FetcherReason",
    "GatewayReason",
    "Job",
    "JobDescriptor",
    "JobDescriptorError",
    "JobReason",
    "LeaseReason",
    "OpenedRun",
    "ParamserverReason",
    "ProgressKind",
    "PublishedParameters",
    "ReceivedUpdate",
    "RetryPolicy",
    "Reusable",
    "RunState",
    "RunStatus",
    "SchedulerReason",
    "SentUpdate",
    "Slice",
    "StreamReason",
    "SubmitReason",
    "error_metadata",
    "error_reason",
    "error_retry_delay",
    "handoff_folder",
    "read_error",
    "retry",
    "write_error",
]
