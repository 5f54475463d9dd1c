"""The submitter's one error type and its reasons.

SubmitReason (what SubmitService answers, and what `tendril jobs submit` exits with) is the
wire catalogue in :mod:`tendril_sdk.reasons`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import SubmitReason

__all__ = ["SubmitError", "SubmitLocalReason", "SubmitReason"]


class SubmitLocalReason(enum.StrEnum):
    """Refusals of the command line only (no RPC answers them)."""

    OUT_EXISTS = "OUT_EXISTS"  # --out names a folder that exists: results never overwrite anything


class SubmitError(TendrilError):
    """A submission that cannot go on (see ``reason``)."""

    service = "submit"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: SubmitReason | SubmitLocalReason,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)


class WorkerLost(Exception):
    """The job's worker disappeared (lease not renewable, worker unreachable, job lost); ``str()`` says why."""
