"""The scheduler's one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class SchedulerError(TendrilError):
    """Something the reference scheduler refuses or cannot do (see ``reason``)."""

    service = "scheduler"
