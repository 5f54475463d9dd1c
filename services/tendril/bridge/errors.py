"""The job bridge's one error type; its reasons are the SDK's :class:`~tendril_sdk.reasons.BridgeReason`."""

from __future__ import annotations

from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import BridgeReason


class BridgeError(TendrilError):
    """Anything the bridge refuses or fails at; mapped to a status code by the server factory.

    NOTE: ``reason`` is a :class:`BridgeReason` member — the SDK declares every reason an
    executor can get, so a new one is added there first. A plain string is only a peer's own
    reason passed on unchanged (:func:`tendril.core.calls.remote_error`).
    """

    service = "bridge"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: BridgeReason | str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        # NOTE: stored as the plain wire string, so logs and ErrorInfo never see the enum type.
        super().__init__(kind, message, reason=str(reason), metadata=metadata)
