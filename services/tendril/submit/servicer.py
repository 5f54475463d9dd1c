"""Thin gRPC servicers of a submitter: AllocationService (offers, routed to the submission whose
request they answer) and SubmitService (one submission per call, its events streamed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from tendril.core.logs import get_logger
from tendril.core.timeutil import now, to_timestamp
from tendril.scheduler.allocation import parse_offer
from tendril.submit import core
from tendril.submit.jobfile import JobFile, load_job_text
from tendril.submit.offers import OfferBox
from tendril_proto.job.v1 import job_pb2
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tendril_proto.submit.v1 import submit_pb2, submit_pb2_grpc

log = get_logger("tendril.submit")


class OfferRouter:
    """The open OfferBoxes of this process; an offer goes to the box that published its request."""

    def __init__(self) -> None:
        self.boxes: set[OfferBox] = set()

    async def consider(self, offer: Any) -> tuple[bool, str]:
        for box in list(self.boxes):
            if box.has(offer.request_id):
                return await box.consider(offer)
        return False, f"request {offer.request_id!r} is not an open request of this submitter"


class AllocationServicer(scheduler_pb2_grpc.AllocationServiceServicer):
    """Answers offers: the best of a request's offers is ACCEPTED, the others REJECTED."""

    def __init__(self, router: OfferRouter) -> None:
        self.router = router

    async def Offer(self, request: scheduler_pb2.OfferRequest, context: Any) -> scheduler_pb2.OfferResponse:
        offer = parse_offer(request)
        accepted, reason = await self.router.consider(offer)
        log.info("offer." + ("accepted" if accepted else "rejected"), worker=offer.worker_id, reason=reason)
        decision = scheduler_pb2.OFFER_DECISION_ACCEPTED if accepted else scheduler_pb2.OFFER_DECISION_REJECTED
        return scheduler_pb2.OfferResponse(decision=decision, reason=reason)


def _state(name: str) -> int:
    return int(job_pb2.JobState.Value(f"JOB_STATE_{name}"))


def event_to_proto(event: core.Event) -> submit_pb2.SubmitResponse:
    out = submit_pb2.SubmitResponse(at=to_timestamp(now()))
    match event:
        case core.OfferTaken():
            out.offer_taken.CopyFrom(
                submit_pb2.OfferTaken(worker_id=event.worker_id, lease_id=event.lease_id, offers=event.offers)
            )
        case core.Dispatched():
            out.dispatched.CopyFrom(
                submit_pb2.Dispatched(job_id=event.job_id, worker_id=event.worker_id, attempt=event.attempt)
            )
        case core.Progress():
            out.progress.CopyFrom(submit_pb2.Progress(job_id=event.job_id, values=event.values))
        case core.LogText():
            out.log.CopyFrom(submit_pb2.LogText(job_id=event.job_id, text=event.text))
        case core.Retry():
            out.retry.CopyFrom(
                submit_pb2.Retry(
                    job_id=event.job_id, worker_id=event.worker_id, reason=event.reason, attempt=event.attempt
                )
            )
        case core.ResultsFetched():
            out.results_fetched.CopyFrom(
                submit_pb2.ResultsFetched(path=str(event.path), manifest=event.manifest.message)
            )
        case core.Done():
            done = submit_pb2.Done(
                job_id=event.job_id,
                worker_id=event.worker_id,
                state=_state(event.state),  # type: ignore[arg-type]
                exit_code=event.exit_code,
                reason=event.reason,
                results_path=str(event.results_path or ""),
            )
            if event.manifest is not None and event.manifest.message is not None:
                done.manifest.CopyFrom(event.manifest.message)
            out.done.CopyFrom(done)
    return out


# Runs one job: (job, the results folder, where events go) -> the end.
Runner = Callable[[JobFile, Path, Callable[[core.Event], None]], Coroutine[Any, Any, core.Done]]


class SubmitServicer(submit_pb2_grpc.SubmitServiceServicer):
    """One submission per Submit call; the caller going away cancels it."""

    def __init__(self, run: Runner, out_for: Callable[[JobFile], Path]) -> None:
        self.run = run
        self.out_for = out_for

    async def Submit(self, request: submit_pb2.SubmitRequest, context: Any) -> AsyncIterator[submit_pb2.SubmitResponse]:
        job = load_job_text(request.job_toml, source="job_toml")
        events: asyncio.Queue[core.Event] = asyncio.Queue()
        task: asyncio.Task[core.Done] = asyncio.create_task(self.run(job, self.out_for(job), events.put_nowait))
        try:
            while True:
                getting = asyncio.create_task(events.get())
                await asyncio.wait({getting, task}, return_when=asyncio.FIRST_COMPLETED)
                if getting.done():
                    yield event_to_proto(getting.result())
                    continue
                getting.cancel()
                while not events.empty():
                    yield event_to_proto(events.get_nowait())
                task.result()  # raises what stopped the submission
                return
        finally:
            if not task.done():
                task.cancel()  # NOTE: the caller went away: the job is cancelled and its lease released
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
