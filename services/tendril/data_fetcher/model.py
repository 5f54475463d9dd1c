"""What the DataFetcher core works with, free of gRPC: assignments, chunks, counters, and the
two upstream ports (the job's scheduler and the data nodes) that the gRPC adapters implement."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import Protocol

from tendril.core.config import split_address
from tendril.core.errors import ErrorKind
from tendril.core.ids import is_sha256_hex, is_valid_name
from tendril.data_fetcher.errors import FetcherError, FetcherReason
from tendril_sdk.retry import Backoff, RetryPolicy


@dataclasses.dataclass(frozen=True)
class SliceKey:
    """A slice's identity in the cache: its data set, its name and its content hash."""

    dataset_id: str
    slice_name: str
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.sha256}-{self.slice_name}"


@dataclasses.dataclass(frozen=True)
class Assignment:
    """The scheduler's answer to "which slice next?" (scheduler.v1.SliceAssignment)."""

    dataset_id: str
    slice_name: str
    size_bytes: int
    sha256: str
    data_node_address: str
    epoch: int = 0

    @property
    def key(self) -> SliceKey:
        return SliceKey(self.dataset_id, self.slice_name, self.sha256)


def is_dialable(address: str) -> bool:
    """True for an address a channel can dial: "host:port" or "unix:PATH"."""
    if address.startswith("unix:"):
        return len(address) > len("unix:")
    try:
        split_address(address)
    except ValueError:
        return False
    return True


def check_assignment(a: Assignment, scheduler: str) -> None:
    """Refuse an assignment the fetcher cannot act on safely (it names files and is hashed)."""
    problems = []
    if not is_valid_name(a.dataset_id):
        problems.append(f"dataset_id {a.dataset_id!r} is not a plain name")
    if not is_valid_name(a.slice_name):
        problems.append(f"slice_name {a.slice_name!r} is not a plain file name")
    if not is_sha256_hex(a.sha256):
        problems.append(f"sha256 {a.sha256!r} is not 64 lowercase hex digits")
    if a.size_bytes <= 0:
        problems.append("size_bytes is not positive")
    if not is_dialable(a.data_node_address):
        problems.append(f"data_node_address {a.data_node_address!r} is not host:port")
    if problems:
        raise FetcherError(
            ErrorKind.FAILED_PRECONDITION,
            f"the scheduler at {scheduler} sent an unusable slice assignment: {'; '.join(problems)}",
            reason=FetcherReason.BAD_ASSIGNMENT,
            metadata={"scheduler": scheduler},
        )


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One piece of a slice stream."""

    offset: int
    data: bytes
    total_bytes: int


@dataclasses.dataclass
class FetcherStats:
    """Counters since start (GetStats)."""

    cache_hits: int = 0
    cache_misses: int = 0
    bytes_downloaded: int = 0
    wait_seconds: float = 0.0
    sha256_mismatches: int = 0
    resumed_fetches: int = 0


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """Bounds on retries of upstream calls (the delays are a :class:`tendril_sdk.retry.Backoff`)."""

    attempts: int = 5  # consecutive failures (without progress) before giving up
    backoff_seconds: float = 0.2  # first wait; doubles up to backoff_max_seconds
    backoff_max_seconds: float = 2.0
    idle_timeout_seconds: float = 30.0  # a stream that sends nothing for this long counts as cut
    call_timeout_seconds: float = 10.0  # deadline of one AssignSlice call

    def backoff(self) -> Backoff:
        """Fresh delays for one run of retries."""
        return Backoff(self.backoff_seconds, self.backoff_max_seconds)

    def retry_policy(self) -> RetryPolicy:
        """Retry a failure whose FetcherError is retryable, ``attempts`` tries in all."""
        return RetryPolicy(
            codes=frozenset(),
            attempts=self.attempts,
            initial_backoff=self.backoff_seconds,
            max_backoff=self.backoff_max_seconds,
            retry_if=lambda e: isinstance(e, FetcherError) and e.retryable,
        )


class Coordinator(Protocol):
    """The jobs' schedulers (CoordinationService.AssignSlice), addressed per call."""

    async def assign(self, address: str, job_id: str, worker_id: str, cached_slices: list[str]) -> Assignment:
        """The job's next slice; raises FetcherError (retryable kinds for transient failures)."""
        ...


class SliceSource(Protocol):
    """The data nodes (DataNodeService.FetchSlice), addressed per call."""

    def stream(self, address: str, dataset_id: str, slice_name: str, offset: int) -> AsyncGenerator[Chunk, None]:
        """Chunks of a slice from ``offset`` on; raises FetcherError (retryable kinds for cuts)."""
        ...
