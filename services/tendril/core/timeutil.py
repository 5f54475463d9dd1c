"""Conversions between wall-clock seconds and protobuf Timestamp/Duration."""

from __future__ import annotations

import time

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp


def now() -> float:
    """Wall-clock seconds since the epoch (what leases and records are stamped with)."""
    return time.time()


def to_timestamp(seconds: float | None) -> Timestamp | None:
    """Seconds since the epoch -> Timestamp (None stays None so fields stay unset)."""
    if seconds is None:
        return None
    ts = Timestamp()
    whole = int(seconds)
    ts.seconds = whole
    ts.nanos = round((seconds - whole) * 1e9) % 1_000_000_000
    return ts


def from_timestamp(ts: Timestamp) -> float:
    """Timestamp -> seconds since the epoch."""
    return ts.seconds + ts.nanos / 1e9


def from_duration(d: Duration) -> float:
    """Duration -> seconds."""
    return d.seconds + d.nanos / 1e9
