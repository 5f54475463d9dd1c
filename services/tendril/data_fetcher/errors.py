"""The one error type of the DataFetcher and its reasons.

FetcherReason (what the RPCs answer) is the wire catalogue in :mod:`tendril_sdk.reasons`;
DownloadReason marks the failures a download retries on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import FetcherReason

__all__ = ["RETRYABLE", "DownloadReason", "FetcherError", "FetcherReason"]

# Failures worth another attempt: the peer may be back (restarted, network blip, cut stream).
RETRYABLE = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED})


class DownloadReason(enum.StrEnum):
    """A slice stream broke off; the download resumes, and only DATA_NODE_UNAVAILABLE leaves it."""

    STREAM_STALLED = "STREAM_STALLED"  # the data node sent nothing for the idle timeout
    STREAM_SHORT = "STREAM_SHORT"  # the stream ended before the slice's last byte


class FetcherError(TendrilError):
    """A bad request, a refused or failed upstream call, or a slice that did not verify."""

    service = "data_fetcher"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: FetcherReason | DownloadReason,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE
