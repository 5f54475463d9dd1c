"""The Arbiter's one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class ArbiterError(TendrilError):
    """A malformed request, a caller soliciting for someone else, an arbiter that is stopping."""

    service = "arbiter"
