"""The LeaseService's one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class LeaseError(TendrilError):
    """Bad lease input, unknown lease, wrong owner, no room, wrong lease state."""

    service = "lease"
