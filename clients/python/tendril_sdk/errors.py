"""Errors of bridge calls: the ErrorInfo reason of a rich status, and the reasons a bridge answers.

Every Tendril service fails a call with a rich status (google.rpc.Status in the trailer
``grpc-status-details-bin``) whose ErrorInfo carries a stable ``reason`` (UPPER_SNAKE) and
facts in ``metadata``. :func:`error_reason` reads it from any failed call;
:class:`BridgeReason` names every reason the job bridge answers, its own and those of the
services behind it that an executor acts on; :class:`BridgeError` is what
:class:`~tendril_sdk.bridge.BridgeClient` raises.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
    "BridgeError",
    "BridgeReason",
    "ExecutorEnvError",
    "error_metadata",
    "error_reason",
]


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    if not callable(getattr(error, "trailing_metadata", None)):
        return None
    try:
        status = rpc_status.from_call(error)
    except (ValueError, TypeError):
        # NOTE: from_call refuses a status detail whose code differs from the call's (a proxy
        # rewrote it); that detail cannot be trusted, so it is treated as absent.
        return None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call's rich status; "" when it has none."""
    info = _error_info(error)
    return info.reason if info is not None else ""


def error_metadata(error: grpc.RpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a failed call's rich status (ids, limits, upstream codes)."""
    info = _error_info(error)
    return dict(info.metadata) if info is not None else {}


class BridgeReason(enum.StrEnum):
    """Every ErrorInfo reason a job bridge answers; the value is the string on the wire.

    Members compare equal to their wire string (``BridgeReason.ROUND_CLOSED ==
    "ROUND_CLOSED"``). A reason not listed here (a newer worker, another scheduler) stays a
    plain ``str`` in :attr:`BridgeError.reason`. Codes are given as the bridge answers them.
    """

    # -- the bridge itself -------------------------------------------------------------------
    BAD_BRIDGE_TOKEN = "BAD_BRIDGE_TOKEN"
    """UNAUTHENTICATED, every RPC: no ``authorization: Bearer <token>`` metadata, or a wrong token."""
    PATH_NOT_CONFINED = "PATH_NOT_CONFINED"
    """INVALID_ARGUMENT: a path is empty, absolute, has ``..`` or a NUL byte, or leaves the work dir."""
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    """NOT_FOUND, SendUpdate/PublishParameters: ``path`` is not a file in the work dir (write it first)."""
    BAD_FILE = "BAD_FILE"
    """INVALID_ARGUMENT, SendUpdate/PublishParameters: the file is not a SafeTensors file that can be sent."""
    BAD_WEIGHT = "BAD_WEIGHT"
    """INVALID_ARGUMENT, SendUpdate: ``weight`` must be > 0."""
    BAD_TIMEOUT = "BAD_TIMEOUT"
    """INVALID_ARGUMENT, ReceiveUpdate: ``timeout_seconds`` is negative."""
    JOB_CONFIG_MISSING = "JOB_CONFIG_MISSING"
    """FAILED_PRECONDITION: the job's config lacks a key the RPC needs (``metadata["key"]``)."""
    JOB_CONFIG_BAD = "JOB_CONFIG_BAD"
    """FAILED_PRECONDITION: a key of the job's config has a value the bridge cannot use (``metadata["key"]``)."""
    NO_SCHEDULER = "NO_SCHEDULER"
    """FAILED_PRECONDITION, NextSlice/ReportProgress: the job was dispatched without a scheduler."""
    BAD_URI = "BAD_URI"
    """INVALID_ARGUMENT, FetchResource: not a file:///absolute, http:// or https:// URI of a file."""
    BAD_SHA256 = "BAD_SHA256"
    """INVALID_ARGUMENT, FetchResource: ``sha256`` is not 64 hex digits."""
    BAD_DEST = "BAD_DEST"
    """INVALID_ARGUMENT, FetchResource: the URI has no file name and no ``dest`` was given."""
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    """NOT_FOUND, FetchResource: the file:// source does not exist."""
    RESOURCE_FORBIDDEN = "RESOURCE_FORBIDDEN"
    """PERMISSION_DENIED, FetchResource: the worker may not read the file:// source."""
    RESOURCE_HTTP_ERROR = "RESOURCE_HTTP_ERROR"
    """FetchResource: the HTTP server answered an error (404/410 NOT_FOUND, 401/403
    PERMISSION_DENIED, 5xx UNAVAILABLE, else FAILED_PRECONDITION)."""
    RESOURCE_UNREACHABLE = "RESOURCE_UNREACHABLE"
    """UNAVAILABLE, FetchResource: cannot connect to the URI's host."""
    RESOURCE_TRANSFER = "RESOURCE_TRANSFER"
    """UNAVAILABLE (RESOURCE_EXHAUSTED when the disk is full), FetchResource: the download broke off."""
    SHA256_MISMATCH = "SHA256_MISMATCH"
    """DATA_LOSS: downloaded or streamed bytes do not have the expected sha256; nothing was kept."""
    SLICE_MISSING = "SLICE_MISSING"
    """UNAVAILABLE, NextSlice: the cached slice vanished before it was linked; call again."""
    BRIDGE_SOCKET_FAILED = "BRIDGE_SOCKET_FAILED"
    """INTERNAL: the bridge could not listen on its socket (JobService answers Dispatch with it)."""

    # -- a peer behind the bridge failed without a reason of its own --------------------------
    # The bridge keeps the peer's status code (CANCELLED and UNKNOWN, which a service cannot
    # answer with, become UNAVAILABLE; UNIMPLEMENTED becomes FAILED_PRECONDITION) and names the
    # peer in the message.
    REMOTE_CANCELLED = "REMOTE_CANCELLED"
    """UNAVAILABLE: the peer's call was cancelled (it is stopping); retry."""
    REMOTE_UNKNOWN = "REMOTE_UNKNOWN"
    """UNAVAILABLE: the peer failed without saying how (the call broke off); retry."""
    REMOTE_INVALID_ARGUMENT = "REMOTE_INVALID_ARGUMENT"
    """INVALID_ARGUMENT from the peer."""
    REMOTE_DEADLINE_EXCEEDED = "REMOTE_DEADLINE_EXCEEDED"
    """DEADLINE_EXCEEDED: the peer did not answer in time."""
    REMOTE_NOT_FOUND = "REMOTE_NOT_FOUND"
    """NOT_FOUND from the peer."""
    REMOTE_ALREADY_EXISTS = "REMOTE_ALREADY_EXISTS"
    """ALREADY_EXISTS from the peer."""
    REMOTE_PERMISSION_DENIED = "REMOTE_PERMISSION_DENIED"
    """PERMISSION_DENIED: the peer does not accept this worker."""
    REMOTE_RESOURCE_EXHAUSTED = "REMOTE_RESOURCE_EXHAUSTED"
    """RESOURCE_EXHAUSTED: the peer is overloaded or a message was too large."""
    REMOTE_FAILED_PRECONDITION = "REMOTE_FAILED_PRECONDITION"
    """FAILED_PRECONDITION from the peer."""
    REMOTE_ABORTED = "REMOTE_ABORTED"
    """ABORTED: the peer gave the call up (a newer call took over); retry."""
    REMOTE_OUT_OF_RANGE = "REMOTE_OUT_OF_RANGE"
    """OUT_OF_RANGE from the peer."""
    REMOTE_UNIMPLEMENTED = "REMOTE_UNIMPLEMENTED"
    """FAILED_PRECONDITION: the address in the job's config is not the service it should be (UNIMPLEMENTED)."""
    REMOTE_INTERNAL = "REMOTE_INTERNAL"
    """INTERNAL: the peer failed (or the connection broke mid-call)."""
    REMOTE_UNAVAILABLE = "REMOTE_UNAVAILABLE"
    """UNAVAILABLE: the peer cannot be reached; retry."""
    REMOTE_DATA_LOSS = "REMOTE_DATA_LOSS"
    """DATA_LOSS from the peer."""
    REMOTE_UNAUTHENTICATED = "REMOTE_UNAUTHENTICATED"
    """UNAUTHENTICATED: the peer did not accept the worker's credentials."""

    # -- the parameter server (SendUpdate, ReceiveUpdate, PublishParameters, FetchParameters) --
    RUN_NOT_OPEN = "RUN_NOT_OPEN"
    """NOT_FOUND: the run's aggregate job has not opened it yet (it starts a moment later); retry."""
    NO_PARAMETERS = "NO_PARAMETERS"
    """FAILED_PRECONDITION: nobody published θ0 for the run yet (PublishParameters first)."""
    ROUND_CLOSED = "ROUND_CLOSED"
    """FAILED_PRECONDITION, SendUpdate: the round closed without this update; fetch θ and join the open round."""
    ROUND_NOT_OPEN = "ROUND_NOT_OPEN"
    """FAILED_PRECONDITION: the round is not open (not reached yet); fetch θ and join the open round."""
    RUN_FINISHED = "RUN_FINISHED"
    """FAILED_PRECONDITION, SendUpdate: the run's last round is over."""
    RUN_CLOSED = "RUN_CLOSED"
    """FAILED_PRECONDITION: the run was closed (its aggregate job ended)."""
    ALREADY_COMMITTED = "ALREADY_COMMITTED"
    """ALREADY_EXISTS, SendUpdate: this worker's update for the round already counts (a retried send)."""
    ROUND_STILL_OPEN = "ROUND_STILL_OPEN"
    """DEADLINE_EXCEEDED, ReceiveUpdate: the round did not close within the timeout."""
    UPDATE_GONE = "UPDATE_GONE"
    """FAILED_PRECONDITION, ReceiveUpdate: the round's update is no longer kept; fetch θ instead."""
    LAYOUT_MISMATCH = "LAYOUT_MISMATCH"
    """INVALID_ARGUMENT: the file's tensors (names, shapes) differ from the run's θ0."""
    NON_FINITE_UPDATE = "NON_FINITE_UPDATE"
    """INVALID_ARGUMENT, SendUpdate: the update holds NaN or Inf."""
    NON_FINITE_PARAMETERS = "NON_FINITE_PARAMETERS"
    """INVALID_ARGUMENT, PublishParameters: θ0 holds NaN or Inf."""
    AGGREGATION_FAILED = "AGGREGATION_FAILED"
    """INTERNAL, ReceiveUpdate: the parameter server could not close the round."""

    # -- the DataFetcher (NextSlice) ---------------------------------------------------------
    JOB_NOT_OPEN = "JOB_NOT_OPEN"
    """NOT_FOUND: the DataFetcher does not know the job (it restarted twice in a row); retry."""
    JOB_CLOSED = "JOB_CLOSED"
    """FAILED_PRECONDITION: the job was closed at the DataFetcher; no more slices for it."""
    FETCHER_STOPPING = "FETCHER_STOPPING"
    """UNAVAILABLE: the DataFetcher is stopping and hands out no more slices until it is back; retry."""
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    """UNAVAILABLE: the scheduler or the data node could not be reached; retry."""
    UPSTREAM_REFUSED = "UPSTREAM_REFUSED"
    """FAILED_PRECONDITION: the scheduler refused to assign a slice (``metadata["upstream_reason"]``)."""
    DATA_NODE_UNAVAILABLE = "DATA_NODE_UNAVAILABLE"
    """UNAVAILABLE: the data node failed repeatedly while the slice was downloaded; retry."""
    STREAM_STALLED = "STREAM_STALLED"
    """UNAVAILABLE: the data node's stream stalled; retry."""
    STREAM_SHORT = "STREAM_SHORT"
    """UNAVAILABLE: the data node's stream ended early; retry."""
    SLICE_SHA256_MISMATCH = "SLICE_SHA256_MISMATCH"
    """DATA_LOSS: the slice arrived damaged twice; call NextSlice again for the next one."""
    CACHE_WRITE_FAILED = "CACHE_WRITE_FAILED"
    """RESOURCE_EXHAUSTED: the worker's slice cache cannot be written (disk full?)."""
    SLICE_LARGER_THAN_CACHE = "SLICE_LARGER_THAN_CACHE"
    """FAILED_PRECONDITION: a slice does not fit the worker's slice cache."""
    BAD_ASSIGNMENT = "BAD_ASSIGNMENT"
    """FAILED_PRECONDITION: the scheduler's assignment is unusable (bad name, size or hash)."""

    # -- the scheduler (ReportProgress, as the reference scheduler answers) -------------------
    UNKNOWN_JOB = "UNKNOWN_JOB"
    """NOT_FOUND: the scheduler does not count this job in its run (it was dropped); stop."""
    STALE_ROUND = "STALE_ROUND"
    """FAILED_PRECONDITION: the report names a round older than one already reported."""
    BAD_PROGRESS_KIND = "BAD_PROGRESS_KIND"
    """INVALID_ARGUMENT: the report's kind is not set."""
    BAD_BATCH = "BAD_BATCH"
    """INVALID_ARGUMENT: a BATCH report needs batch_size > 0."""

    @classmethod
    def remote(cls, code: grpc.StatusCode) -> BridgeReason:
        """The reason the bridge answers when a peer failed with ``code`` and no reason of its own."""
        return cls(f"REMOTE_{code.name}")

    @classmethod
    def parse(cls, reason: str) -> BridgeReason | str:
        """The member for a wire string, or the string itself when it is not a known reason."""
        try:
            return cls(reason)
        except ValueError:
            return reason


class BridgeError(Exception):
    """A bridge call failed: the status ``code``, the ErrorInfo ``reason`` (a
    :class:`BridgeReason` when known, else the string, "" when the answer had none), the
    ``message`` and the ErrorInfo ``metadata``; ``method`` names the RPC."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        method: str = "",
    ) -> None:
        super().__init__(f"{method + ': ' if method else ''}{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason: BridgeReason | str = BridgeReason.parse(reason) if reason else ""
        self.metadata = dict(metadata or {})
        self.method = method

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, *, method: str = "") -> BridgeError:
        """The BridgeError of a failed gRPC call (code, details, ErrorInfo reason and metadata)."""
        code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
        details = error.details() if callable(getattr(error, "details", None)) else str(error)
        info = _error_info(error)
        return cls(
            code,
            details or code.name,
            reason=info.reason if info is not None else "",
            metadata=dict(info.metadata) if info is not None else None,
            method=method,
        )

    def __repr__(self) -> str:
        return f"BridgeError({self.code.name}, {self.message!r}, reason={str(self.reason)!r}, method={self.method!r})"


class ExecutorEnvError(ValueError):
    """The environment JobService gives an executor is incomplete (``SOCKET_PATH``,
    ``TENDRIL_BRIDGE_TOKEN``, ``JOB_JSON``); the message names what is missing."""
