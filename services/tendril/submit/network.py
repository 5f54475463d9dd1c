"""The ports of :mod:`.ports` over gRPC, on the reference scheduler's allocation machinery: the
request is published with :func:`tendril.scheduler.allocation.publish_request`, the lease kept by
its :class:`~tendril.scheduler.leasekeeper.LeaseKeeper`, the job dispatched and followed by its
:class:`~tendril.scheduler.jobhandle.JobHandle`; the results are read with JobService
ListResults / FetchResult / DeleteResults.

Which failures mean "the worker disappeared" (:class:`~.errors.WorkerLost`, retried elsewhere):
a lease that cannot be renewed (LeaseLost), every call that did not reach the worker or broke
off (``tendril.core.calls.CURABLE_CODES``), a Dispatch refused for something another worker may
not refuse (anything but INVALID_ARGUMENT and PERMISSION_DENIED), and a job the worker no longer
knows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from tendril.core.calls import CURABLE_CODES, ChannelPool
from tendril.core.errors import ErrorKind
from tendril.core.gateways import Gateways
from tendril.core.logs import get_logger
from tendril.core.timeutil import from_timestamp
from tendril.scheduler.allocation import OfferIn, Wanted, publish_request, resource_request
from tendril.scheduler.jobhandle import TERMINAL, JobHandle
from tendril.scheduler.leasekeeper import LeaseKeeper, LeaseLost
from tendril.submit.core import LogText, Progress
from tendril.submit.errors import SubmitError, SubmitReason, WorkerLost
from tendril.submit.ports import Emit, Ended, FileEntry, Manifest, ResultsGone, ResultsRefused
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_sdk.errors import error_reason
from tendril_sdk.reasons import JobReason

log = get_logger("tendril.submit")

CALL_TIMEOUT_SECONDS = 15.0
PROGRESS_POLL_SECONDS = 1.0
NOT_READY_TRIES = 30  # RESULTS_NOT_READY: the worker retries its clean-up; asked again each second
REFUSED_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}


def _text(exc: grpc.aio.AioRpcError) -> str:
    reason = error_reason(exc)
    return f"{exc.code().name}{' ' + reason if reason else ''}: {exc.details()}"


class GrpcWorker:
    """One leased worker (see :class:`~.ports.Worker`)."""

    def __init__(self, pool: ChannelPool, offer: OfferIn) -> None:
        self.worker_id = offer.worker_id
        self.offer = offer
        self._pool = pool
        self._keeper = LeaseKeeper(
            pool.channel(offer.endpoints.lease), offer.lease_id, offer.worker_id, expires_at=offer.expires_at
        )
        self._jobs = job_pb2_grpc.JobServiceStub(pool.channel(offer.endpoints.job))

    def _lost(self, exc: grpc.aio.AioRpcError, what: str) -> WorkerLost:
        return WorkerLost(f"{what} on {self.worker_id} failed: {_text(exc)}")

    async def confirm(self) -> None:
        try:
            await self._keeper.confirmed()
        except LeaseLost as exc:
            raise WorkerLost(str(exc)) from exc

    async def keep(self) -> None:
        try:
            await self._keeper.keep()
        except LeaseLost as exc:
            raise WorkerLost(str(exc)) from exc

    async def release(self) -> None:
        await self._keeper.release()

    def _handle(self, job_id: str) -> JobHandle:
        return JobHandle(self._pool.channel(self.offer.endpoints.job), job_id, self.worker_id)

    async def dispatch(
        self, job_id: str, executor: tuple[str, str], config: dict[str, Any], timeout_seconds: float
    ) -> None:
        try:
            await self._handle(job_id).dispatch(self.offer.lease_id, executor, config, timeout_seconds=timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in REFUSED_CODES:
                raise SubmitError(
                    ErrorKind.FAILED_PRECONDITION,
                    f"worker {self.worker_id} refused to dispatch job {job_id}: {_text(exc)}",
                    reason=SubmitReason.DISPATCH_REFUSED,
                    metadata={"upstream_code": exc.code().name, "upstream_reason": error_reason(exc) or ""},
                ) from exc
            raise self._lost(exc, "Dispatch") from exc

    async def wait_end(self, job_id: str) -> Ended:
        try:
            end = await self._handle(job_id).wait_end()
        except grpc.aio.AioRpcError as exc:
            raise self._lost(exc, "Watch") from exc
        if end.lost:
            raise WorkerLost(end.reason)
        return Ended(end.state, end.exit_code, end.reason)

    async def follow(self, job_id: str, emit: Emit) -> None:
        async def progress() -> None:
            last: dict[str, float] = {}
            while True:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await self._jobs.Get(job_pb2.GetRequest(job_id=job_id), timeout=CALL_TIMEOUT_SECONDS)
                    values = dict(reply.job.progress)
                    if values and values != last:
                        last = values
                        emit(Progress(job_id, values))
                    if reply.job.state in TERMINAL:
                        return
                await asyncio.sleep(PROGRESS_POLL_SECONDS)

        polling = asyncio.create_task(progress())
        try:
            async for piece in self._jobs.Logs(job_pb2.LogsRequest(job_id=job_id, follow=True)):
                if piece.text:
                    emit(LogText(job_id, piece.text))
        except grpc.aio.AioRpcError as exc:
            log.info("submit.log_follow_broken", job_id=job_id, error=_text(exc))
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling

    async def cancel(self, job_id: str, reason: str) -> None:
        await self._handle(job_id).cancel(reason)

    async def manifest(self, job_id: str) -> Manifest:
        for _ in range(NOT_READY_TRIES):
            try:
                reply = await self._jobs.ListResults(
                    job_pb2.ListResultsRequest(job_id=job_id), timeout=CALL_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as exc:
                reason = error_reason(exc)
                if reason == JobReason.RESULTS_NOT_READY:
                    await asyncio.sleep(1.0)
                    continue
                if reason == JobReason.RESULTS_GONE:
                    raise ResultsGone(_text(exc)) from exc
                if exc.code() in CURABLE_CODES:
                    raise self._lost(exc, "ListResults") from exc
                raise ResultsRefused(_text(exc)) from exc
            m = reply.manifest
            return Manifest(
                m.job_id,
                tuple(FileEntry(f.path, f.size_bytes, f.sha256) for f in m.files),
                tuple(m.skipped),
                from_timestamp(m.kept_at),
                message=m,
            )
        raise WorkerLost(f"worker {self.worker_id} kept answering RESULTS_NOT_READY for job {job_id}")

    async def chunks(self, job_id: str, path: str, offset: int) -> AsyncIterator[tuple[int, bytes]]:
        request = job_pb2.FetchResultRequest(job_id=job_id, path=path, offset=offset)
        try:
            async for chunk in self._jobs.FetchResult(request, timeout=CALL_TIMEOUT_SECONDS * 20):
                yield chunk.offset, chunk.data
        except grpc.aio.AioRpcError as exc:
            if exc.code() in CURABLE_CODES:
                raise self._lost(exc, f"FetchResult {path}") from exc
            raise ResultsRefused(_text(exc)) from exc

    async def delete_results(self, job_id: str) -> None:
        try:
            await self._jobs.DeleteResults(job_pb2.DeleteResultsRequest(job_id=job_id), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            log.info("submit.delete_results_failed", job_id=job_id, error=_text(exc))


class GrpcNetwork:
    """The gateway's bus and the workers' services (see :class:`~.ports.Network`)."""

    def __init__(self, pool: ChannelPool, *, gateways: Gateways, topic: str, advertised: Callable[[], str]) -> None:
        self._pool = pool
        self.gateways = gateways
        self.gateway = str(gateways)
        self.topic = topic
        self.advertised = advertised

    async def publish(
        self, request_id: str, wanted: Wanted, executor: tuple[str, str], bid: float, deadline_seconds: float
    ) -> None:
        request = resource_request(
            request_id,
            peer_id=self._pool.peer_id,
            address=self.advertised(),
            wanted=wanted,
            executor=executor,
            bid=bid,
            deadline_seconds=deadline_seconds,
        )
        await publish_request(self.gateways, self.topic, self._pool.peer_id, request)

    def worker(self, offer: OfferIn) -> GrpcWorker:
        return GrpcWorker(self._pool, offer)
