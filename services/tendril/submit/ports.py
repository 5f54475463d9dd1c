"""What a submission needs from the network (no gRPC here): :mod:`.network` implements these
over gRPC, the unit tests with doubles."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from tendril.scheduler.allocation import OfferIn, Wanted


@dataclasses.dataclass(frozen=True)
class Ended:
    """How a job ended."""

    state: str  # "SUCCEEDED", "FAILED" or "CANCELLED"
    exit_code: int
    reason: str


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file of a job's results manifest."""

    path: str
    size_bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A job's results manifest as its worker lists it."""

    job_id: str
    files: tuple[FileEntry, ...]
    skipped: tuple[str, ...] = ()
    kept_at: float = 0.0
    message: Any = None  # the wire message (tendril.job.v1.ResultsManifest), passed on as it is

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


class ResultsGone(Exception):
    """The worker kept no results for the job (or deleted them)."""


class ResultsRefused(Exception):
    """The worker refused to list or send the results for a reason a retry would not cure."""


# Called with events for the submitter (see core.Event).
Emit = Callable[[Any], None]


class Worker(Protocol):
    """One leased worker, as the submission uses it. Methods raise :class:`~.errors.WorkerLost`
    when the worker cannot be reached or lost the lease or the job."""

    worker_id: str

    async def confirm(self) -> None:
        """Accept the offer (the first renewal)."""
        ...

    async def keep(self) -> None:
        """Renew the lease until cancelled; raises WorkerLost when it cannot be renewed."""
        ...

    async def release(self) -> None:
        """Give the lease back (best effort)."""
        ...

    async def dispatch(
        self, job_id: str, executor: tuple[str, str], config: dict[str, Any], timeout_seconds: float
    ) -> None:
        """Start the job; SubmitError DISPATCH_REFUSED for a refusal another worker would give too."""
        ...

    async def wait_end(self, job_id: str) -> Ended:
        """Follow the job until it ends."""
        ...

    async def follow(self, job_id: str, emit: Emit) -> None:
        """Emit the job's log text and progress until it ends (best effort: never raises)."""
        ...

    async def cancel(self, job_id: str, reason: str) -> None:
        """Cancel the job and wait until it is gone (best effort)."""
        ...

    async def manifest(self, job_id: str) -> Manifest:
        """The job's results manifest; ResultsGone / ResultsRefused / WorkerLost."""
        ...

    def chunks(self, job_id: str, path: str, offset: int) -> AsyncIterator[tuple[int, bytes]]:
        """(offset, data) chunks of one results file from ``offset``; WorkerLost when the stream breaks."""
        ...

    async def delete_results(self, job_id: str) -> None:
        """Delete the job's kept results at the worker (best effort)."""
        ...


class Network(Protocol):
    """The gateway bus and the workers."""

    async def publish(
        self, request_id: str, wanted: Wanted, executor: tuple[str, str], bid: float, deadline_seconds: float
    ) -> None:
        """Publish a resource request (best effort: published again later when it reached nobody)."""
        ...

    def worker(self, offer: OfferIn) -> Worker:
        """The worker of a taken offer."""
        ...
