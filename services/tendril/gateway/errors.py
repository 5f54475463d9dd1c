"""The gateway's one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class GatewayError(TendrilError):
    """Bad bus or registry input, a missing record, a watcher that fell behind."""

    service = "gateway"
