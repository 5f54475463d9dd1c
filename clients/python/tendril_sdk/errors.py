"""Errors of calls: the ErrorInfo reason of a rich status, and what a bridge call raises.

Every Tendril service fails a call with a rich status (google.rpc.Status in the trailer
``grpc-status-details-bin``) whose ErrorInfo carries a stable ``reason`` (UPPER_SNAKE) and
facts in ``metadata``. :func:`error_reason` reads it from any failed call, to compare with the
members of the catalogues in :mod:`tendril_sdk.reasons`; :class:`BridgeError` is what
:class:`~tendril_sdk.bridge.BridgeClient` raises, its ``reason`` a :class:`BridgeReason` when
known (re-exported here, where it was first documented).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tendril_sdk.reasons import BridgeReason

_D = TypeVar("_D", error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo)

__all__ = [
    "BridgeError",
    "BridgeReason",
    "ExecutorEnvError",
    "error_metadata",
    "error_reason",
    "error_retry_delay",
]


def _detail(error: grpc.RpcError, kind: type[_D]) -> _D | None:
    """The first detail of type ``kind`` in a failed call's rich status."""
    if not callable(getattr(error, "trailing_metadata", None)):
        return None
    try:
        status = rpc_status.from_call(error)
    except (ValueError, TypeError):
        # NOTE: from_call refuses a status detail whose code differs from the call's (a proxy
        # rewrote it); that detail cannot be trusted, so it is treated as absent.
        return None
    for detail in status.details if status is not None else ():
        found = kind()
        if detail.Unpack(found):
            return found
    return None


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    return _detail(error, error_details_pb2.ErrorInfo)


def error_retry_delay(error: grpc.RpcError) -> float | None:
    """Seconds the server asks to wait before retrying (google.rpc.RetryInfo); None without one."""
    info = _detail(error, error_details_pb2.RetryInfo)
    return info.retry_delay.ToTimedelta().total_seconds() if info is not None else None


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call's rich status; "" when it has none."""
    info = _error_info(error)
    return info.reason if info is not None else ""


def error_metadata(error: grpc.RpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a failed call's rich status (ids, limits, upstream codes)."""
    info = _error_info(error)
    return dict(info.metadata) if info is not None else {}


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
        if info is None:
            info = error_details_pb2.ErrorInfo()  # no reason, no metadata
        return cls(code, details or code.name, reason=info.reason, metadata=dict(info.metadata), method=method)

    def __repr__(self) -> str:
        return f"BridgeError({self.code.name}, {self.message!r}, reason={str(self.reason)!r}, method={self.method!r})"


class ExecutorEnvError(ValueError):
    """The environment JobService gives an executor is incomplete (``SOCKET_PATH``,
    ``TENDRIL_BRIDGE_TOKEN``, ``JOB_JSON``); the message names what is missing."""
