"""The supervisor's one error type."""

from __future__ import annotations

from tendril.core.errors import ErrorKind, TendrilError


class SupervisorError(TendrilError):
    """The worker cannot start (port taken, a service never became healthy, ...)."""

    service = "supervisor"

    def __init__(self, message: str, *, reason: str, kind: ErrorKind = ErrorKind.FAILED_PRECONDITION) -> None:
        super().__init__(kind, message, reason=reason)
