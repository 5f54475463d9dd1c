"""Bounded history of offer records (ListOffers) and of request ids already handled."""

from __future__ import annotations

import collections

from tendril.arbiter.model import OfferRecord

DEFAULT_HISTORY = 1000
DEFAULT_SEEN = 8192


class OfferHistory:
    def __init__(self, *, size: int = DEFAULT_HISTORY, seen: int = DEFAULT_SEEN) -> None:
        self._records: collections.deque[OfferRecord] = collections.deque(maxlen=size)
        self._seen: collections.OrderedDict[str, OfferRecord] = collections.OrderedDict()
        self._seen_size = seen

    def add(self, record: OfferRecord) -> None:
        self._records.append(record)

    def mark_seen(self, record: OfferRecord) -> None:
        """Remember that ``record.request_id`` has been handled (duplicates are dropped)."""
        self._seen[record.request_id] = record
        self._seen.move_to_end(record.request_id)
        while len(self._seen) > self._seen_size:
            self._seen.popitem(last=False)

    def seen(self, request_id: str) -> OfferRecord | None:
        return self._seen.get(request_id)

    def newest(self, limit: int) -> list[OfferRecord]:
        """Up to ``limit`` records, newest first."""
        out: list[OfferRecord] = []
        for record in reversed(self._records):
            if len(out) >= limit:
                break
            out.append(record)
        return out

    def __len__(self) -> int:
        return len(self._records)
