"""The gateway's one error type and its reasons (the catalogue is GatewayReason)."""

from __future__ import annotations

from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import GatewayReason

__all__ = ["GatewayError", "GatewayReason"]


class GatewayError(TendrilError):
    """Bad bus or registry input, a missing or foreign record, a rate limit, a watcher that fell behind."""

    service = "gateway"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: GatewayReason,
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata, retry_delay=retry_delay)
