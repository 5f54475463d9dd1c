"""The JobService's one error type and its reasons.

JobReason (what the RPCs answer) is the wire catalogue in :mod:`tendril_sdk.reasons`;
JobRecordReason covers the job records' own consistency checks.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import JobReason

__all__ = ["JobError", "JobReason", "JobRecordReason"]


class JobRecordReason(enum.StrEnum):
    """A job record refused a state change: a consistency check inside the JobService.

    No RPC answers these: the changes the RPCs make are legal by construction, and the ones
    made in the background (a job ending) log the error.
    """

    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"  # the state machine forbids the move (e.g. out of an end state)
    STATE_CHANGED = "STATE_CHANGED"  # the stored state is no longer the one the change started from


class JobError(TendrilError):
    """Anything the JobService refuses or fails at; mapped to a status code by the server factory."""

    service = "job"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: JobReason | JobRecordReason,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)
