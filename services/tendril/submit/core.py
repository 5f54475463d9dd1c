"""One submission (no gRPC here): allocate, lease, dispatch, follow, fetch the results, retry.

Life of a submission (:meth:`Submission.run`):

1. Publish a resource request for the job (again every ``network.republish_seconds``) until
   the :class:`~.offers.OfferBox` took the best offer of a request, or give up after
   ``network.allocation_timeout_seconds`` (DEADLINE_EXCEEDED ``NO_OFFER``).
2. Confirm the lease (the first renewal), then renew it in the background; dispatch the job
   (id ``<name>-<8 hex>-a<attempt>``: a new one per attempt) and follow its log and progress.
3. When the job ends: fetch its results into the local folder (:mod:`.download`), delete them
   at the worker, release the lease, report ``Done``.
4. When the worker disappears (:class:`~.errors.WorkerLost`: the lease cannot be renewed, the
   worker does not answer, the job is lost, the results cannot be fetched), its job is cancelled
   (best effort), its lease released, and the job runs again on another worker (offers of lost
   workers are refused), up to ``retries`` times (UNAVAILABLE ``RETRIES_EXHAUSTED`` after).
   Only the attempt that ended is fetched, into one folder renamed into place at the end: the
   results arrive once.
5. Cancelled (Ctrl-C, the caller of Submit went away): the job is cancelled and the lease
   released before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.scheduler.allocation import OfferIn, Wanted
from tendril.submit.download import download
from tendril.submit.errors import SubmitError, SubmitReason, WorkerLost
from tendril.submit.jobfile import JobFile
from tendril.submit.offers import OfferBox
from tendril.submit.ports import Ended, Manifest, Network, ResultsGone, ResultsRefused, Worker

log = get_logger("tendril.submit")

LOG_DRAIN_SECONDS = 3.0  # after the end, the log follower may take this long to print the rest
CANCEL_SECONDS = 30.0  # a cancel at the end of a submission waits this long for the worker


# -- events ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OfferTaken:
    worker_id: str
    lease_id: str
    offers: int


@dataclasses.dataclass(frozen=True)
class Dispatched:
    job_id: str
    worker_id: str
    attempt: int


@dataclasses.dataclass(frozen=True)
class Progress:
    job_id: str
    values: dict[str, float]


@dataclasses.dataclass(frozen=True)
class LogText:
    job_id: str
    text: str


@dataclasses.dataclass(frozen=True)
class Retry:
    job_id: str
    worker_id: str
    reason: str
    attempt: int


@dataclasses.dataclass(frozen=True)
class ResultsFetched:
    path: Path
    manifest: Manifest


@dataclasses.dataclass(frozen=True)
class Done:
    job_id: str
    worker_id: str
    state: str
    exit_code: int
    reason: str
    results_path: Path | None
    manifest: Manifest | None

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"


Event = OfferTaken | Dispatched | Progress | LogText | Retry | ResultsFetched | Done


class Submission:
    """Runs one job (:meth:`run`) through ``network``; results go to the new folder ``out``."""

    def __init__(
        self,
        job: JobFile,
        network: Network,
        offers: OfferBox,
        out: Path,
        *,
        emit: Callable[[Event], None] = lambda event: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.network = network
        self.offers = offers
        self.out = out
        self.emit = emit
        self.clock = clock
        self.token = uuid.uuid4().hex[:8]
        self.lost_workers: list[str] = []
        offers.avoid = lambda: self.lost_workers

    def job_id(self, attempt: int) -> str:
        return f"{self.job.name}-{self.token}-a{attempt}"

    async def run(self) -> Done:
        """The job, run to its end (retried on other workers when its worker disappears)."""
        attempt = 0
        try:
            while True:
                offer, seen = await self._take_offer(attempt)
                worker = self.network.worker(offer)
                job_id = self.job_id(attempt)
                try:
                    await worker.confirm()
                except WorkerLost as exc:
                    # NOTE: an offer that expired before its acceptance costs no retry: take another.
                    log.info("submit.offer_lost", worker=offer.worker_id, reason=str(exc))
                    await _shielded(worker.release(), CANCEL_SECONDS)
                    continue
                self.emit(OfferTaken(offer.worker_id, offer.lease_id, seen))
                try:
                    return await self._attempt(worker, offer, job_id, attempt)
                except WorkerLost as exc:
                    self.lost_workers.append(offer.worker_id)
                    log.warning("submit.worker_lost", job_id=job_id, worker=offer.worker_id, reason=str(exc))
                    if attempt >= self.job.retries:
                        raise SubmitError(
                            ErrorKind.UNAVAILABLE,
                            f"job {job_id}: worker {offer.worker_id} disappeared ({exc}) and the job was retried "
                            f"{attempt} time(s) already (retries = {self.job.retries})",
                            reason=SubmitReason.RETRIES_EXHAUSTED,
                            metadata={"job_id": job_id, "worker_id": offer.worker_id},
                        ) from exc
                    attempt += 1
                    self.emit(Retry(job_id, offer.worker_id, str(exc), attempt))
        finally:
            self.offers.close_all()
            # NOTE: an offer taken while a republished request was already out is accepted but
            # unused: its lease is given back at once instead of expiring unrenewed.
            for unused in self.offers.drain():
                await _shielded(self.network.worker(unused).release(), CANCEL_SECONDS)

    # -- allocation ----------------------------------------------------------------------

    async def _take_offer(self, attempt: int) -> tuple[OfferIn, int]:
        network = self.job.network
        deadline = self.clock() + network.allocation_timeout_seconds
        resources = self.job.resources
        wanted = Wanted(resources.cpu, resources.memory_gib, resources.storage_gib, resources.gpu)
        executor = (self.job.executor.executor_class, self.job.executor.name)
        while True:
            left = deadline - self.clock()
            if left <= 0:
                raise SubmitError(
                    ErrorKind.DEADLINE_EXCEEDED,
                    f"no worker offered {executor[0]}/{executor[1]} with cpu {wanted.cpu:g}, memory "
                    f"{wanted.memory_gib:g} GiB, storage {wanted.storage_gib:g} GiB, gpu {wanted.gpu} at bid "
                    f"{self.job.bid:g} within {network.allocation_timeout_seconds:g} s (network.allocation_timeout"
                    f"_seconds){self._lost_note()}; check that workers joined gateway {network.gateway}, configure "
                    "that executor and have those resources free",
                    reason=SubmitReason.NO_OFFER,
                )
            request_id = f"{self.job.name}-{self.token}-a{attempt}-{uuid.uuid4().hex[:6]}"
            self.offers.open(request_id)
            await self.network.publish(request_id, wanted, executor, self.job.bid, network.request_deadline_seconds)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(self.offers.taken(), min(left, network.republish_seconds))

    def _lost_note(self) -> str:
        if not self.lost_workers:
            return ""
        return f" (workers that lost it before are not asked again: {', '.join(self.lost_workers)})"

    # -- one attempt ---------------------------------------------------------------------

    async def _attempt(self, worker: Worker, offer: OfferIn, job_id: str, attempt: int) -> Done:
        dispatched = False
        keeping: asyncio.Task[None] | None = None
        following: asyncio.Task[None] | None = None
        ending: asyncio.Task[Ended] | None = None
        try:
            keeping = asyncio.create_task(worker.keep())
            executor = (self.job.executor.executor_class, self.job.executor.name)
            await self._while_leased(
                keeping, worker.dispatch(job_id, executor, dict(self.job.config), self.job.timeout_seconds)
            )
            dispatched = True
            self.emit(Dispatched(job_id, offer.worker_id, attempt))
            following = asyncio.create_task(worker.follow(job_id, self.emit))
            ending = asyncio.create_task(worker.wait_end(job_id))
            end = await self._while_leased(keeping, ending)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(following), LOG_DRAIN_SECONDS)
            path, manifest = await self._while_leased(keeping, self._fetch(worker, job_id))
            dispatched = False  # over: nothing to cancel
            done = Done(job_id, offer.worker_id, end.state, end.exit_code, end.reason, path, manifest)
            self.emit(done)
            return done
        except BaseException as exc:
            if dispatched:
                why = "cancelled by its submitter" if isinstance(exc, asyncio.CancelledError) else str(exc)
                await _shielded(worker.cancel(job_id, why[:1000]), CANCEL_SECONDS)
            raise
        finally:
            for task in (following, ending, keeping):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await _shielded(worker.release(), CANCEL_SECONDS)

    @staticmethod
    async def _while_leased(keeping: asyncio.Task[None], work: Any) -> Any:
        """Await ``work`` unless the lease is lost first (then WorkerLost)."""
        task = work if isinstance(work, asyncio.Task) else asyncio.ensure_future(work)
        try:
            await asyncio.wait({keeping, task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        keeping.result()  # raises what ended the renewals
        raise WorkerLost("the lease's renewals stopped")

    async def _fetch(self, worker: Worker, job_id: str) -> tuple[Path | None, Manifest | None]:
        try:
            manifest = await worker.manifest(job_id)
            path = await download(worker, manifest, self.out)
        except ResultsGone:
            return None, None
        except ResultsRefused as exc:
            raise SubmitError(
                ErrorKind.UNAVAILABLE,
                f"job {job_id} ended but its results could not be fetched: {exc}",
                reason=SubmitReason.RESULTS_FETCH_FAILED,
            ) from exc
        log.info("submit.results_fetched", job_id=job_id, path=str(path), files=len(manifest.files))
        self.emit(ResultsFetched(path, manifest))
        await worker.delete_results(job_id)
        return path, manifest


async def _shielded(coro: Any, timeout: float) -> None:
    """Run ``coro`` to its end (bounded) even when the caller is being cancelled."""
    task = asyncio.ensure_future(asyncio.wait_for(coro, timeout))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        raise
    except Exception as exc:
        log.warning("submit.cleanup_failed", error=repr(exc))
