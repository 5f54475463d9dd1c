"""One error type per service, mapped to gRPC status codes in exactly one place.

A service core raises its own subclass of :class:`TendrilError` (``LeaseError``, ``JobError``,
...) with an :class:`ErrorKind`; it never imports grpc. The error interceptor of the server
factory turns the error into a rich status (google.rpc.Status with an ErrorInfo detail), so
every service answers bad input the same way.

Reasons are declared, never spelled as literals: the services' wire catalogues are in
:mod:`tendril_sdk.reasons` (where every client can match them), reasons that never leave a
process next to their package's error type, and the reasons of the common core's own errors
are :class:`CoreReason`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import grpc


class ErrorKind(enum.Enum):
    """What went wrong, in words a service core can use without knowing gRPC."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    ABORTED = "ABORTED"
    DATA_LOSS = "DATA_LOSS"
    INTERNAL = "INTERNAL"


STATUS_CODES: Mapping[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.ABORTED: grpc.StatusCode.ABORTED,
    ErrorKind.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

ERROR_DOMAIN = "tendril.dev"

# NOTE: what one error may carry to its caller. gRPC sends the message twice (grpc-message,
# percent-encoded, and inside grpc-status-details-bin, base64) and a client refuses trailers
# over 8 KiB (16 KiB hard): a message that echoes a 1 MB input would not arrive at all, the
# caller would see "metadata size exceeds hard limit" instead. These bounds keep the worst case
# (a message of 3-byte characters, every metadata entry full) near 5 KiB.
MAX_ERROR_MESSAGE_BYTES = 1024
MAX_ERROR_METADATA_ENTRIES = 16
MAX_ERROR_METADATA_KEY_BYTES = 64
MAX_ERROR_METADATA_VALUE_BYTES = 256


class CoreReason(enum.StrEnum):
    """Reasons of the common core's errors; they stop a process before it serves anything."""

    BAD_CONFIG = "BAD_CONFIG"  # a configuration value is missing or wrong (metadata "key" names it)
    PORT_IN_USE = "PORT_IN_USE"  # a server's listen address is taken by another process
    STATE_DAMAGED = "STATE_DAMAGED"  # a database of the worker's state dir is damaged
    STATE_NOT_WRITABLE = "STATE_NOT_WRITABLE"  # a folder or file of the worker's state cannot be written


# NOTE: the codes no ErrorKind has. CANCELLED and UNKNOWN are what a call reports when the
# peer stopped or the connection broke mid-call: "try again" (UNAVAILABLE). UNIMPLEMENTED means
# the address serves no such RPC (a wrong address, an older peer): fix the setup first.
_KIND_OF_OTHER_CODES: Mapping[grpc.StatusCode, ErrorKind] = {
    grpc.StatusCode.CANCELLED: ErrorKind.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN: ErrorKind.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED: ErrorKind.FAILED_PRECONDITION,
}


def bounded(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` UTF-8 bytes, else its head and its tail with the cut counted.

    The head says what was wrong and the tail usually what to do, so both are kept.
    """
    data = text.encode()
    if len(data) <= limit:
        return text
    budget = max(0, limit - 40)  # room for the marker
    head = data[: budget * 2 // 3].decode(errors="ignore")
    tail = data[len(data) - (budget - budget * 2 // 3) :].decode(errors="ignore") if budget else ""
    cut = len(text) - len(head) - len(tail)
    return f"{head} [... {cut} characters cut ...] {tail}"


def bounded_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """An error's metadata within the bounds above (the first entries, each key and value bounded)."""
    return {
        bounded(key, MAX_ERROR_METADATA_KEY_BYTES): bounded(value, MAX_ERROR_METADATA_VALUE_BYTES)
        for key, value in list(metadata.items())[:MAX_ERROR_METADATA_ENTRIES]
    }


def kind_for_status(code: grpc.StatusCode) -> ErrorKind:
    """The ErrorKind of a status code, to pass a remote peer's error on (see ``_KIND_OF_OTHER_CODES``)."""
    for kind, status in STATUS_CODES.items():
        if status == code:
            return kind
    return _KIND_OF_OTHER_CODES.get(code, ErrorKind.INTERNAL)


class TendrilError(Exception):
    """Base of every service's error type.

    ``reason`` is a stable UPPER_SNAKE identifier clients can switch on (ErrorInfo.reason): a
    member of a declared catalogue (each subclass names its catalogue types), or a peer's own
    reason passed on; ``message`` says what was wrong and what to do; ``metadata`` adds facts
    (ids, limits); ``retry_delay`` (seconds), when given, goes out as a google.rpc.RetryInfo
    telling the caller when a retry may succeed (rate limits).
    """

    service = "tendril"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: str,
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        if not reason:
            # NOTE: an error without a reason is a bug in its raiser; it must not reach the wire
            # as an ErrorInfo without one (tests/unit/test_error_reasons.py proves the raisers'
            # reasons are declared).
            raise ValueError(f"{type(self).__name__}({kind.value}, {message!r}) needs a reason")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.retry_delay = retry_delay

    @property
    def status_code(self) -> grpc.StatusCode:
        return STATUS_CODES[self.kind]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind.value}, {self.message!r}, reason={self.reason!r})"


class ConfigError(TendrilError):
    """A configuration value is missing or wrong (raised before any server starts)."""

    service = "config"

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(
            ErrorKind.INVALID_ARGUMENT, message, reason=CoreReason.BAD_CONFIG, metadata={"key": key} if key else None
        )
        self.key = key


class PortInUseError(TendrilError):
    """A listen address is taken by another process."""

    service = "server"

    def __init__(self, address: str, config_key: str) -> None:
        super().__init__(
            ErrorKind.FAILED_PRECONDITION,
            f"cannot listen on {address}: the port is already in use. Stop the other process or set "
            f"{config_key} (or its TENDRIL_* variable) to a free address.",
            reason=CoreReason.PORT_IN_USE,
            metadata={"address": address, "config_key": config_key},
        )
        self.address = address
        self.config_key = config_key


class StateError(TendrilError):
    """A file or folder of the worker's state cannot be used; the message names it and the way out."""

    service = "state"

    def __init__(self, message: str, *, reason: CoreReason, path: str) -> None:
        super().__init__(ErrorKind.FAILED_PRECONDITION, message, reason=reason, metadata={"path": path})
        self.path = path
