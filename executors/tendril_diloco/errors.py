"""The executor's one error type: a message for the job's log, then a non-zero exit."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class ExecutorError(TendrilError):
    """Training cannot go on; ``message`` says what was wrong and what to do."""

    service = "diloco"
