"""The job bridge's one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class BridgeError(TendrilError):
    """Anything the bridge refuses or fails at; mapped to a status code by the server factory."""

    service = "bridge"
