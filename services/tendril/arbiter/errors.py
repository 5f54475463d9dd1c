"""The Arbiter's one error type and its reasons (the catalogue is ArbiterReason)."""

from __future__ import annotations

from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import ArbiterReason

__all__ = ["ArbiterError", "ArbiterReason"]


class ArbiterError(TendrilError):
    """A malformed request, a caller soliciting for someone else, an arbiter that is stopping."""

    service = "arbiter"

    def __init__(
        self, kind: ErrorKind, message: str, *, reason: ArbiterReason, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)
