"""The LeaseService's one error type and its reasons.

LeaseReason (what the RPCs answer) is the wire catalogue in :mod:`tendril_sdk.reasons`;
LedgerReason covers the ledger file, checked once at start-up.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import LeaseReason

__all__ = ["LeaseError", "LeaseReason", "LedgerReason"]


class LedgerReason(enum.StrEnum):
    """Why the LeaseService cannot start (its process exits with the error; no RPC answers it)."""

    LEDGER_UNUSABLE = "LEDGER_UNUSABLE"  # the SQLite ledger cannot be opened (permissions, space, damage)
    LEDGER_SCHEMA = "LEDGER_SCHEMA"  # the ledger file has a schema version this Tendril does not know


class LeaseError(TendrilError):
    """Bad lease input, unknown lease, wrong owner, no room, wrong lease state."""

    service = "lease"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: LeaseReason | LedgerReason,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)
