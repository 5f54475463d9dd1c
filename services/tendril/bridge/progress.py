"""Progress relay: per-batch reports never wait on the scheduler.

An executor reports its training batches (each one, or several in one report: the report's
``batches``, 0 meaning 1) and obeys the scheduler's directive. Forwarding each report and
waiting for the answer would put one scheduler round trip (milliseconds on a LAN, tens of
milliseconds across a WAN) into every training step. The relay answers a BATCH report at once
from the newest directive it holds and forwards the report in the background, in order.
Because a SCHEDULE_UPDATE is kept as an absolute target ("send after batch k + n of this
round", k counting every batch the reports covered), counting down locally ends the round on
the same batch as a synchronous relay would, as long as the scheduler answers before the
executor's next batch report (one batch late at worst otherwise). Reports are forwarded as
they come, not merged: how often to report is the executor's choice (the DiLoCo executor
reports every few hundred milliseconds, and every batch near its sync point).

Reports of any other kind (metrics, update sent/received, finished) are rare and carry the
round's boundaries: they wait until every queued report reached the scheduler, then go
through synchronously. But a report of a round before the newest one reported (overlapped
sync: round r's METRICS and UPDATE_RECEIVED, sent while the executor already trains round
r+1) carries no boundary of the round in progress: it is queued like a batch report and
answered at once from the held directive, so that the executor never waits for the scheduler
while it could train; it changes neither the batch count of the round in progress nor the held
directive (its answer only matters when it is DONE, which is held as always and reaches the
executor with its next report). A failed background forward is raised to the executor on its
next report, so a lost scheduler is never hidden for long.

No gRPC here: the forwarding call is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

from tendril_proto.scheduler.v1 import scheduler_pb2

Forward = Callable[[scheduler_pb2.ReportProgressRequest], Awaitable[scheduler_pb2.ReportProgressResponse]]

# NOTE: a scheduler that stops answering must not make the queue grow without bound: past this
# many reports in flight, a BATCH report waits for the queue like any other report.
MAX_IN_FLIGHT = 64


@dataclasses.dataclass
class _Held:
    """The newest directive, with a SCHEDULE_UPDATE kept as an absolute batch target."""

    directive: int = scheduler_pb2.DIRECTIVE_CONTINUE
    round: int = 0
    target_batch: int = 0  # SCHEDULE_UPDATE: send after this many batches of ``round``


class ProgressRelay:
    """Answers BATCH reports from the held directive; forwards every report in order."""

    def __init__(self, forward: Forward, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._forward = forward
        self._max_in_flight = max_in_flight
        self._held = _Held()
        self._round = 0
        self._batches = 0  # batches the BATCH reports of ``_round`` covered
        # (report, batches of its round counted when it was made, whether it is of an older round)
        self._queue: asyncio.Queue[tuple[scheduler_pb2.ReportProgressRequest, int, bool]] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._sender: asyncio.Task[None] | None = None
        self._error: Exception | None = None

    async def report(self, progress: scheduler_pb2.ReportProgressRequest) -> scheduler_pb2.ReportProgressResponse:
        """The directive for ``progress`` (forwarded now, or queued for the scheduler)."""
        async with self._lock:  # one report at a time keeps them in order
            self._raise_failure()
            batch = progress.kind == scheduler_pb2.PROGRESS_KIND_BATCH
            # NOTE: a batch report of another round moves the count there (also back: an
            # executor that missed a round's update trains it again); any other report of an
            # older round is a late report of overlapped sync and leaves the count alone.
            late = not batch and progress.round < self._round
            if progress.round != self._round and not late:
                self._round, self._batches = progress.round, 0
            if batch:
                self._batches += progress.batches or 1  # a report may cover several batches
            if (not batch and not late) or self._queue.qsize() >= self._max_in_flight:
                await self.flush()
                self._raise_failure()
                answer = await self._forward(progress)
                self._hold(answer, progress.round, self._batches, late=late)
                return self._answer()
            self._queue.put_nowait((progress, self._batches, late))
            if self._sender is None or self._sender.done():
                self._sender = asyncio.create_task(self._send_queued())
            return self._answer()

    async def flush(self) -> None:
        """Wait until every queued report reached the scheduler (or one failed)."""
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._sender)

    async def close(self, timeout: float) -> None:
        """Deliver what is queued within ``timeout`` seconds, then drop the rest."""
        if self._sender is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._sender

    # -- inside -------------------------------------------------------------------------------

    async def _send_queued(self) -> None:
        while not self._queue.empty():
            progress, batch, late = self._queue.get_nowait()
            try:
                answer = await self._forward(progress)
            except Exception as exc:
                # NOTE: what is still queued is dropped: the executor learns of the failure on
                # its next report and the scheduler's own timeouts take over from there.
                self._error = exc
                while not self._queue.empty():
                    self._queue.get_nowait()
                return
            self._hold(answer, progress.round, batch, late=late)

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _hold(
        self, answer: scheduler_pb2.ReportProgressResponse, round_: int, batch: int, *, late: bool = False
    ) -> None:
        """Keep the scheduler's answer to a report of ``round_`` made after ``batch`` batches (of
        a ``late`` report, an older round's: only DONE)."""
        if self._held.directive == scheduler_pb2.DIRECTIVE_DONE:
            return  # DONE is final
        directive = answer.directive or scheduler_pb2.DIRECTIVE_CONTINUE
        if late and directive != scheduler_pb2.DIRECTIVE_DONE:
            return  # NOTE: the held directive is the round in progress's
        target = batch + answer.batches_until_update if directive == scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE else 0
        self._held = _Held(directive, round_, target)

    def _answer(self) -> scheduler_pb2.ReportProgressResponse:
        held = self._held
        if held.directive == scheduler_pb2.DIRECTIVE_DONE:
            return scheduler_pb2.ReportProgressResponse(directive=held.directive, round=held.round)
        if held.directive == scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE and held.round == self._round:
            return scheduler_pb2.ReportProgressResponse(
                directive=held.directive,
                batches_until_update=max(0, held.target_batch - self._batches),
                round=held.round,
            )
        return scheduler_pb2.ReportProgressResponse(directive=scheduler_pb2.DIRECTIVE_CONTINUE, round=self._round)
