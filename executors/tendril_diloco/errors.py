"""The executor's one error type: a message for the job's log, then a non-zero exit."""

from __future__ import annotations


class ExecutorError(Exception):
    """Training cannot go on; ``message`` says what was wrong and what to do, ``reason`` is a
    stable UPPER_SNAKE name for it (``BAD_JOB_CONFIG``, ``LOSS_NOT_FINITE``, ...)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def __repr__(self) -> str:
        return f"ExecutorError({self.message!r}, reason={self.reason!r})"
