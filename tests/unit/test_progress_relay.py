"""The bridge's progress relay: batch reports never wait on the scheduler, yet nothing changes."""

from __future__ import annotations

import asyncio

import pytest

from tendril.bridge.progress import ProgressRelay
from tendril_proto.scheduler.v1 import scheduler_pb2 as pb

BATCH, METRICS = pb.PROGRESS_KIND_BATCH, pb.PROGRESS_KIND_METRICS


class Planner:
    """A scheduler that, like the reference one, plans ``planned`` batches a round.

    It answers SCHEDULE_UPDATE(planned - batches seen) from the ``announce_after``-th batch of
    a round on, CONTINUE before; ``delay`` stands for the network.
    """

    def __init__(self, planned: int, announce_after: int, delay: float = 0.0) -> None:
        self.planned, self.announce_after, self.delay = planned, announce_after, delay
        self.seen: list[tuple[int, int]] = []  # (kind, round) in arrival order
        self.batches: dict[int, int] = {}
        self.fail = False
        self.done = False

    async def forward(self, progress: pb.ReportProgressRequest) -> pb.ReportProgressResponse:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("scheduler gone")
        self.seen.append((progress.kind, progress.round))
        if self.done:
            return pb.ReportProgressResponse(directive=pb.DIRECTIVE_DONE, round=progress.round)
        if progress.kind == BATCH:
            self.batches[progress.round] = self.batches.get(progress.round, 0) + (progress.batches or 1)
        seen = self.batches.get(progress.round, 0)
        if seen >= self.announce_after:
            return pb.ReportProgressResponse(
                directive=pb.DIRECTIVE_SCHEDULE_UPDATE, batches_until_update=self.planned - seen, round=progress.round
            )
        return pb.ReportProgressResponse(directive=pb.DIRECTIVE_CONTINUE, round=progress.round)


async def _train_round(relay: ProgressRelay, round_: int, step_seconds: float) -> int:
    """An executor's loop: report each batch, count down, stop at 0. Returns batches run."""
    remaining: int | None = None
    batches = 0
    while remaining != 0:
        await asyncio.sleep(step_seconds)  # the training step
        batches += 1
        answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=round_))
        if answer.directive == pb.DIRECTIVE_SCHEDULE_UPDATE:
            remaining = answer.batches_until_update
        elif remaining is not None:
            remaining = max(0, remaining - 1)
        assert batches < 100, "never told to sync"
    await relay.report(pb.ReportProgressRequest(kind=METRICS, round=round_))
    return batches


async def test_a_round_ends_on_the_batch_the_scheduler_planned() -> None:
    planner = Planner(planned=7, announce_after=3, delay=0.002)
    relay = ProgressRelay(planner.forward)
    for round_ in range(3):
        assert await _train_round(relay, round_, step_seconds=0.01) == 7
    # every report arrived, in order, the round's metrics after its batches
    assert planner.seen == [(k, r) for r in range(3) for k in [BATCH] * 7 + [METRICS]]


async def test_a_batch_report_does_not_wait_for_a_slow_scheduler() -> None:
    planner = Planner(planned=50, announce_after=1, delay=0.2)
    relay = ProgressRelay(planner.forward)
    loop = asyncio.get_running_loop()
    began = loop.time()
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    assert loop.time() - began < 0.05
    assert answer.directive == pb.DIRECTIVE_CONTINUE
    await relay.flush()
    # the answer to batch 1 ("49 more") counts down locally: after batch 2, 48 remain
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    assert (answer.directive, answer.batches_until_update) == (pb.DIRECTIVE_SCHEDULE_UPDATE, 48)
    await relay.close(timeout=1.0)


async def test_other_reports_wait_for_queued_batches_and_go_through() -> None:
    planner = Planner(planned=10, announce_after=1, delay=0.01)
    relay = ProgressRelay(planner.forward)
    for _ in range(3):
        await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    answer = await relay.report(pb.ReportProgressRequest(kind=METRICS, round=0))
    assert planner.seen == [(BATCH, 0)] * 3 + [(METRICS, 0)]
    assert (answer.directive, answer.batches_until_update) == (pb.DIRECTIVE_SCHEDULE_UPDATE, 7)


async def test_done_is_final_and_reaches_the_next_report() -> None:
    planner = Planner(planned=10, announce_after=1)
    relay = ProgressRelay(planner.forward)
    await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    planner.done = True
    await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    await relay.flush()
    planner.done = False  # a later answer cannot take DONE back
    for round_ in (0, 1):
        answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=round_))
        assert answer.directive == pb.DIRECTIVE_DONE
    await relay.close(timeout=1.0)


async def test_a_failed_forward_is_raised_on_the_next_report() -> None:
    planner = Planner(planned=10, announce_after=1)
    relay = ProgressRelay(planner.forward)
    planner.fail = True
    await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    await relay.flush()
    with pytest.raises(ConnectionError, match="scheduler gone"):
        await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    planner.fail = False
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    assert answer.directive in (pb.DIRECTIVE_CONTINUE, pb.DIRECTIVE_SCHEDULE_UPDATE)
    await relay.close(timeout=1.0)


async def test_a_scheduler_that_falls_behind_makes_reports_wait() -> None:
    gate = asyncio.Event()
    forwarded = 0

    async def stuck(progress: pb.ReportProgressRequest) -> pb.ReportProgressResponse:
        nonlocal forwarded
        await gate.wait()
        forwarded += 1
        return pb.ReportProgressResponse(directive=pb.DIRECTIVE_CONTINUE)

    relay = ProgressRelay(stuck, max_in_flight=3)
    await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    await asyncio.sleep(0.01)  # the sender takes the first and waits on the stuck scheduler
    for _ in range(3):  # three more fill the queue
        await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    blocked = asyncio.create_task(relay.report(pb.ReportProgressRequest(kind=BATCH, round=0)))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "past max_in_flight a report waits for the queue"
    gate.set()
    await asyncio.wait_for(blocked, 1.0)
    assert forwarded == 5


async def test_close_delivers_what_is_queued() -> None:
    planner = Planner(planned=10, announce_after=1, delay=0.01)
    relay = ProgressRelay(planner.forward)
    for _ in range(5):
        await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))
    await relay.close(timeout=2.0)
    assert len(planner.seen) == 5


async def test_reports_covering_several_batches_count_every_batch() -> None:
    """The held target counts batches, not reports: a report of 4 batches moves it by 4."""
    planner = Planner(planned=12, announce_after=1)
    relay = ProgressRelay(planner.forward)
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))  # batch 1
    assert answer.directive == pb.DIRECTIVE_CONTINUE
    await relay.flush()  # the scheduler's answer to batch 1: 11 more, send after batch 12
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0, batches=4))  # 2-5
    assert (answer.directive, answer.batches_until_update) == (pb.DIRECTIVE_SCHEDULE_UPDATE, 7)
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0, batches=6))  # 6-11
    assert answer.batches_until_update == 1
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=0))  # 12
    assert answer.batches_until_update == 0
    await relay.flush()
    assert planner.batches == {0: 12}
    # A new round starts the count again.
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=1, batches=3))
    assert answer.directive == pb.DIRECTIVE_CONTINUE
    await relay.close(timeout=1.0)


async def test_a_late_report_of_the_round_before_does_not_wait_nor_move_the_round() -> None:
    """Overlapped sync: round 0's UPDATE_RECEIVED comes while round 1 trains. It is answered at
    once, reaches the scheduler in order, and neither resets round 1's batch count nor replaces
    the directive held for round 1; a DONE answer to it reaches the next report."""
    received = pb.PROGRESS_KIND_UPDATE_RECEIVED
    planner = Planner(planned=10, announce_after=1, delay=0.2)
    relay = ProgressRelay(planner.forward)
    for _ in range(3):
        await relay.report(pb.ReportProgressRequest(kind=BATCH, round=1))
    await relay.flush()
    loop = asyncio.get_running_loop()
    began = loop.time()
    answer = await relay.report(pb.ReportProgressRequest(kind=received, round=0))
    assert loop.time() - began < 0.1  # not one scheduler round trip (0.2 s)
    assert (answer.directive, answer.batches_until_update) == (pb.DIRECTIVE_SCHEDULE_UPDATE, 7)
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=1))
    assert (answer.directive, answer.batches_until_update) == (pb.DIRECTIVE_SCHEDULE_UPDATE, 6)
    await relay.flush()
    assert planner.seen == [(BATCH, 1)] * 3 + [(received, 0), (BATCH, 1)]
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=1))
    assert (answer.directive, answer.batches_until_update) == (pb.DIRECTIVE_SCHEDULE_UPDATE, 5)
    # A report of the round in progress still waits for its answer.
    await relay.report(pb.ReportProgressRequest(kind=METRICS, round=1))
    assert planner.seen[-1] == (METRICS, 1)
    planner.done = True
    await relay.report(pb.ReportProgressRequest(kind=received, round=0))
    await relay.flush()
    answer = await relay.report(pb.ReportProgressRequest(kind=BATCH, round=1))
    assert answer.directive == pb.DIRECTIVE_DONE
    await relay.close(timeout=1.0)
