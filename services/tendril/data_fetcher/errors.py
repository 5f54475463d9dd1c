"""The one error type of the DataFetcher."""

from __future__ import annotations

from tendril.core.errors import ErrorKind, TendrilError

# Failures worth another attempt: the peer may be back (restarted, network blip, cut stream).
RETRYABLE = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED})


class FetcherError(TendrilError):
    """A bad request, a refused or failed upstream call, or a slice that did not verify."""

    service = "data_fetcher"

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE
