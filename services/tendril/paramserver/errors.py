"""The ParameterServer's one error type and its reasons.

ParamserverReason is the wire catalogue in :mod:`tendril_sdk.reasons`; a broken tensor
stream is answered with the stream contract's StreamReason.
"""

from __future__ import annotations

from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import ParamserverReason, StreamReason

__all__ = ["ParameterServerError", "ParamserverReason", "StreamReason"]


class ParameterServerError(TendrilError):
    """Anything the ParameterServer refuses; ``reason`` is stable (ROUND_CLOSED, ALREADY_COMMITTED...)."""

    service = "paramserver"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: ParamserverReason | StreamReason,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)
