"""The JobService's one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class JobError(TendrilError):
    """Anything the JobService refuses or fails at; mapped to a status code by the server factory."""

    service = "job"
