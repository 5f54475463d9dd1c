"""The supervisor's one error type and its reasons."""

from __future__ import annotations

import enum

from tendril.core.errors import ErrorKind, TendrilError

__all__ = ["SupervisorError", "SupervisorReason"]


class SupervisorReason(enum.StrEnum):
    """Why `tendril worker run` (or `tendril gateway run`) cannot start; it exits with the error."""

    PORT_ZERO = "PORT_ZERO"  # a service is configured with port 0
    PORT_OUT_OF_RANGE = "PORT_OUT_OF_RANGE"  # a port (after worker.port_offset) is above 65535
    PORT_TWICE = "PORT_TWICE"  # two services are configured with one address
    PORT_IN_USE = "PORT_IN_USE"  # an address is taken by another process
    CANNOT_LISTEN = "CANNOT_LISTEN"  # an address cannot be bound for another reason
    STATE_DIR_IN_USE = "STATE_DIR_IN_USE"  # another running worker holds the state dir
    DIR_NOT_WRITABLE = "DIR_NOT_WRITABLE"  # the state dir or work dir cannot be created


class SupervisorError(TendrilError):
    """The worker cannot start (port taken, a service never became healthy, ...)."""

    service = "supervisor"

    def __init__(
        self, message: str, *, reason: SupervisorReason, kind: ErrorKind = ErrorKind.FAILED_PRECONDITION
    ) -> None:
        super().__init__(kind, message, reason=reason)
