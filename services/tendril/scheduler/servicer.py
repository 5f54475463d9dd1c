"""Thin gRPC servicers of the scheduler: AllocationService (offers) and CoordinationService
(progress, slices). They check and translate messages; the decisions are :class:`Run`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.core.validate import Checks
from tendril.scheduler.allocation import parse_offer
from tendril.scheduler.errors import SchedulerError, SchedulerReason
from tendril.scheduler.run import Directive, Member, Progress, ProgressIn, Run
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

log = get_logger("tendril.scheduler")
CHECK = Checks(SchedulerError)

_KINDS = {
    scheduler_pb2.PROGRESS_KIND_BATCH: Progress.BATCH,
    scheduler_pb2.PROGRESS_KIND_METRICS: Progress.METRICS,
    scheduler_pb2.PROGRESS_KIND_UPDATE_SENT: Progress.UPDATE_SENT,
    scheduler_pb2.PROGRESS_KIND_UPDATE_RECEIVED: Progress.UPDATE_RECEIVED,
    scheduler_pb2.PROGRESS_KIND_FINISHED: Progress.FINISHED,
}
_DIRECTIVES = {
    Directive.CONTINUE: scheduler_pb2.DIRECTIVE_CONTINUE,
    Directive.SCHEDULE_UPDATE: scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE,
    Directive.DONE: scheduler_pb2.DIRECTIVE_DONE,
}


def _required(value: str, field: str, what: str) -> None:
    if not value:
        raise SchedulerError(
            ErrorKind.INVALID_ARGUMENT,
            f"{field} is required: {what}",
            reason=SchedulerReason.MISSING_FIELD,
            metadata={"field": field},
        )


class AllocationServicer(scheduler_pb2_grpc.AllocationServiceServicer):
    """Answers every offer at once, explicitly: ACCEPTED while the run needs that role, else REJECTED."""

    def __init__(self, run: Run, on_accept: Callable[[Member], None]) -> None:
        self._run = run
        self._on_accept = on_accept

    async def Offer(self, request: scheduler_pb2.OfferRequest, context: Any) -> scheduler_pb2.OfferResponse:
        offer = parse_offer(request)
        member, reason = self._run.consider_offer(offer)
        if member is None:
            log.info("offer.rejected", worker=offer.worker_id, lease_id=offer.lease_id, reason=reason)
            return scheduler_pb2.OfferResponse(decision=scheduler_pb2.OFFER_DECISION_REJECTED, reason=reason)
        log.info("offer.accepted", worker=offer.worker_id, lease_id=offer.lease_id, role=member.role.value)
        self._on_accept(member)
        return scheduler_pb2.OfferResponse(decision=scheduler_pb2.OFFER_DECISION_ACCEPTED, reason=reason)


class CoordinationServicer(scheduler_pb2_grpc.CoordinationServiceServicer):
    """Progress → directive; the next data slice of a job."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def ReportProgress(
        self, request: scheduler_pb2.ReportProgressRequest, context: Any
    ) -> scheduler_pb2.ReportProgressResponse:
        _required(request.job_id, "job_id", "the reporting job's id")
        kind = _KINDS.get(request.kind)
        if kind is None:
            raise SchedulerError(
                ErrorKind.INVALID_ARGUMENT,
                "kind must be one of PROGRESS_KIND_BATCH, _METRICS, _UPDATE_SENT, _UPDATE_RECEIVED, _FINISHED",
                reason=SchedulerReason.BAD_PROGRESS_KIND,
            )
        batches = request.batches or 1  # NOTE: 0 (unset) is a report of one batch, as before the field
        if kind is Progress.BATCH and request.batch_size == 0:
            raise SchedulerError(
                ErrorKind.INVALID_ARGUMENT,
                "a BATCH report needs batch_size > 0 (samples in the batch)",
                reason=SchedulerReason.BAD_BATCH,
            )
        if kind is Progress.BATCH and request.batch_size < batches:
            raise SchedulerError(
                ErrorKind.INVALID_ARGUMENT,
                f"a BATCH report covering {batches} batches needs batch_size >= {batches} "
                f"(their samples summed), not {request.batch_size}",
                reason=SchedulerReason.BAD_BATCH,
            )
        event = ProgressIn(
            request.job_id,
            request.worker_id,
            kind,
            request.round,
            batch_size=request.batch_size,
            batch_seconds=CHECK.number(request.batch_seconds, "batch_seconds", SchedulerReason.BAD_BATCH, minimum=0.0),
            metrics=dict(request.metrics),
            batches=batches,
        )
        out = self._run.progress(event)
        return scheduler_pb2.ReportProgressResponse(
            directive=_DIRECTIVES[out.directive], batches_until_update=out.batches_until_update, round=out.round
        )

    async def AssignSlice(
        self, request: scheduler_pb2.AssignSliceRequest, context: Any
    ) -> scheduler_pb2.AssignSliceResponse:
        _required(request.job_id, "job_id", "the job the slice is for")
        assignment, dataset = self._run.assign_slice(request.job_id, request.worker_id, request.cached_slices)
        return scheduler_pb2.AssignSliceResponse(
            assignment=scheduler_pb2.SliceAssignment(
                dataset_id=dataset.dataset_id,
                slice_name=assignment.slice.name,
                size_bytes=assignment.slice.size_bytes,
                sha256=assignment.slice.sha256,
                data_node_address=dataset.data_node_address,
                epoch=assignment.epoch,
            )
        )
