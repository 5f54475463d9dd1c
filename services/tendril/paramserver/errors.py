"""The ParameterServer's one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class ParameterServerError(TendrilError):
    """Anything the ParameterServer refuses; ``reason`` is stable (ROUND_CLOSED, ALREADY_COMMITTED...)."""

    service = "paramserver"
