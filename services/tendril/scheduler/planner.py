"""Sync points: every worker of a round aims at one wall-clock time, re-planned on every report.

The sync point D of a round is when the typical worker will have run H batches: for each
worker, the time it ran (or, at its current seconds per batch, will have run) its H-th batch
of the round; D is the median of these (the median, so that one straggler or a worker that
joined late cannot stretch every round). On every batch report the planner tells the worker
how many batches it still runs before it sends its update: n = round((D − now) / s), s being
its seconds per batch. A worker twice as fast runs about 2·H batches, a worker that started
late, stalled or slowed down runs fewer, and all of them reach the parameter server at about
D: what is left is about half of one batch (the sync point is counted in batches), not the
drift of a whole round. Before every worker has been timed (the run's first batches), there is
no sync point yet and the answer is "continue".

Why re-plan on every report rather than once per round: the workers' speeds change while the
round runs (jobs that share CPU cores speed up as soon as one of them stops, other load on the
machine comes and goes, a stall costs one worker a few batches), and a plan fixed at the
round's start carries every such change into the arrival times; and it feeds on itself,
because the times measured at the end of one round (a worker computing alone, faster) plan the
next. Re-planning turns each change into fewer or more batches instead. D itself moves only
as fast as the median worker's own projection, which sharpens as it nears its H-th batch, so
the plan converges rather than oscillates; and since the median worker runs H batches however
fast the machine is, a round stays H inner steps of the typical worker, as with a fixed plan.

Seconds per batch: an exponentially weighted mean of the time between a worker's batch
reports (:class:`StepTimer`), because what must line up is when updates arrive — that
includes data waits, report round trips and a CPU shared with other jobs. A single interval
longer than ``stall_factor`` × the estimate (a data stall, a pause) counts as that much, so a
stall moves the estimate a little and a lasting slowdown is followed within a few batches.

A report may cover several batches (``batches``): an executor that reports every few hundred
milliseconds rather than every batch, and every batch only when its sync point is near. The
interval since its report before is then shared evenly by the batches it covers (the EWMA takes
it as that many equal intervals), the worker's count of batches moves by that many, and the
answer counts from the last batch the report covers — so the plan is the same as if each batch
had been reported, only re-made less often while the sync point is far.

Total batches per round are clamped to [min_batches, max_factor × H] so that a timing outlier
cannot make a round empty or endless.

Overlapped sync (``overlapped``): a worker pushes round r and trains round r+1
while round r's update travels; at its next sync point it must have that update (its next Δ
is measured from it) and waits for it if it has not come. That wait is idle time, and the
plan above does not see it: it lines the sync points up in time and would even give a worker
whose update came late (it began the round late) fewer batches, so that it reaches its sync
point sooner and waits longer. So with ``hide_sync`` a worker's sync point is never earlier
than when the update it waits for is due: the last push of that round (the round closes there)
plus the worker's own seconds from a round's last push to its UPDATE_RECEIVED (an EWMA of the
rounds before, :meth:`SyncPlanner.received`; it includes the pull, the aggregation and up to one
batch until the worker applied the update). Before any worker had an update (the run's first
overlapped round) that time is unknown: the worker then runs at least ``UNKNOWN_UPDATE_BATCHES``
more batches on every report until it reports the update, so it ends the round once the update
came rather than at a sync point where it would wait for it (within the same clamp; a report's
answer reaches the worker a batch late, hence two). Where the sync takes longer than H batches (a large
Δ on a slow link), a round therefore lasts as long as its sync, and the workers train through
it instead of waiting: more than H batches, each counted in the next Δ. Where it takes less,
nothing changes.

The job bridge answers a batch report from the newest answer it holds and forwards the report
in the background (tendril.bridge.progress); the answer is kept there as an absolute target
("send after batch k + n"), so each new answer moves the sync point of a round in progress.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping

from tendril.core.errors import ErrorKind
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason

PROBE_BATCHES = 2  # timed batches every worker reports before the run's first sync point is set
EWMA_ALPHA = 0.2  # weight of the newest interval in a worker's seconds per batch
SYNC_ALPHA = 0.3  # weight of the newest round in a worker's seconds from a round's last push to its update
STALL_FACTOR = 3.0  # an interval counts as at most this many times the estimate
UNKNOWN_UPDATE_BATCHES = 2  # hide_sync: batches still to run while the update waited for has no due time


def round_budget(batch_seconds: Mapping[str, float], target_steps: int) -> float:
    """Seconds a round lasts when every worker keeps its speed: H batches of the median worker."""
    if target_steps < 1:
        raise SchedulerError(
            ErrorKind.INVALID_ARGUMENT, "target_steps must be >= 1", reason=SchedulerRunReason.BAD_PLAN
        )
    times = [s for s in batch_seconds.values() if s > 0]
    if not times:
        raise SchedulerError(
            ErrorKind.FAILED_PRECONDITION,
            "no worker has reported a batch time yet",
            reason=SchedulerRunReason.NO_TIMINGS,
        )
    return target_steps * statistics.median(times)


def batches_for(
    budget_seconds: float,
    batch_seconds: float,
    target_steps: int,
    *,
    done: int = 0,
    min_batches: int = 1,
    max_factor: float = 4.0,
) -> int:
    """Batches still to run by a worker that ran ``done`` batches of the round, takes
    ``batch_seconds`` per batch and has ``budget_seconds`` left until the sync point.

    The round's total (done + the answer) stays within [min_batches, max_factor × H]; a worker
    of unknown speed runs H in all.
    """
    upper = max(min_batches, int(max_factor * target_steps))
    if batch_seconds <= 0:
        return max(0, min(max(target_steps, min_batches), upper) - done)
    total = done + max(0, math.floor(budget_seconds / batch_seconds + 0.5))
    return max(0, min(max(total, min_batches), upper) - done)


class StepTimer:
    """A worker's seconds per batch: EWMA of its intervals; the very first one (it pays for
    start-up) is left out and an interval counts as at most ``stall_factor`` × the estimate.

    An interval may span several batches: it counts as that many equal intervals, each of its
    mean length (the EWMA weight of ``n`` equal steps is 1 − (1 − alpha)ⁿ).
    """

    def __init__(self, alpha: float = EWMA_ALPHA, stall_factor: float = STALL_FACTOR) -> None:
        self._alpha = alpha
        self._stall_factor = stall_factor
        self._seconds = 0.0
        self._seen = 0
        self.count = 0  # batches timed

    def add(self, seconds: float, batches: int = 1) -> None:
        """The interval of ``seconds`` in which ``batches`` batches ran."""
        self._seen += 1
        if self._seen == 1 or seconds <= 0 or batches < 1:
            return
        per_batch = seconds / batches
        first = self.count == 0
        self.count += batches
        if first:
            self._seconds = per_batch
            return
        per_batch = min(per_batch, self._stall_factor * self._seconds)
        weight = 1.0 - (1.0 - self._alpha) ** batches
        self._seconds += weight * (per_batch - self._seconds)

    @property
    def seconds(self) -> float:
        """The estimate, 0.0 before any interval counted."""
        return self._seconds


@dataclasses.dataclass
class RoundPlan:
    """One round's sync point (planner clock)."""

    started: float  # when its first worker began it
    deadline: float | None = None  # the newest sync point; None until the workers are timed

    @property
    def budget(self) -> float | None:
        """The sync point, seconds after the round began."""
        return None if self.deadline is None else self.deadline - self.started


@dataclasses.dataclass
class _Worker:
    timer: StepTimer = dataclasses.field(default_factory=StepTimer)
    round: int = -1
    began_at: float = 0.0  # when it began ``round``
    last_at: float | None = None  # its previous batch report in ``round``
    done: int = 0  # batches reported in ``round``
    reached_at: float | None = None  # when it reported its H-th batch of ``round``
    waits_for: int | None = None  # overlapped sync: the round it pushed and has not had the update of
    update_seconds: float = 0.0  # EWMA: seconds from a round's last push until it had the round's update

    def start(self, round_index: int, at: float) -> None:
        self.round, self.began_at, self.last_at, self.done, self.reached_at = round_index, at, None, 0, None

    def h_done_at(self, target_steps: int) -> float | None:
        """When it ran (or, at its speed, will have run) H batches of its round; None if untimed."""
        if self.reached_at is not None:
            return self.reached_at
        if self.timer.seconds <= 0:
            return None
        since = self.last_at if self.last_at is not None else self.began_at
        return since + (target_steps - self.done) * self.timer.seconds


class SyncPlanner:
    """Sync points and batches left, from the times at which batch reports arrive.

    No clock of its own: every call says when it happened (the caller's clock, seconds), so a
    test can replay any timing.
    """

    def __init__(
        self,
        target_steps: int,
        *,
        probe_batches: int = PROBE_BATCHES,
        min_batches: int = 1,
        max_factor: float = 4.0,
        hide_sync: bool = False,
    ) -> None:
        if target_steps < 1:
            raise SchedulerError(
                ErrorKind.INVALID_ARGUMENT, "target_steps must be >= 1", reason=SchedulerRunReason.BAD_PLAN
            )
        self.target_steps = target_steps
        self._probe = probe_batches
        self._min = min_batches
        self._max_factor = max_factor
        self._hide_sync = hide_sync  # overlapped sync: no sync point before the update waited for is due
        self._workers: dict[str, _Worker] = {}
        self._plans: dict[int, RoundPlan] = {}
        self._pushes: dict[int, dict[str, float]] = {}  # round -> worker -> when it pushed it

    def join(self, worker: str) -> None:
        self._workers.setdefault(worker, _Worker())

    def leave(self, worker: str) -> None:
        self._workers.pop(worker, None)

    def seconds(self, worker: str) -> float:
        """The worker's seconds per batch (0.0 while unknown)."""
        state = self._workers.get(worker)
        return state.timer.seconds if state is not None else 0.0

    def plan(self, round_index: int) -> RoundPlan | None:
        return self._plans.get(round_index)

    def update_seconds(self, worker: str) -> float:
        """The worker's seconds from a round's last push until it had the update (0.0 while unknown)."""
        state = self._workers.get(worker)
        return state.update_seconds if state is not None else 0.0

    def pushed(self, worker: str, round_index: int, at: float) -> None:
        """``worker`` pushed its update of ``round_index`` at ``at`` (its UPDATE_SENT)."""
        self.join(worker)
        self._pushes.setdefault(round_index, {})[worker] = at
        for old in [r for r in self._pushes if r < round_index - 2]:
            del self._pushes[old]
        self._workers[worker].waits_for = round_index

    def received(self, worker: str, round_index: int, at: float | None) -> None:
        """``worker`` had the update of ``round_index`` at ``at`` (its UPDATE_RECEIVED), or will
        not have it (``at`` None: it missed the round and fetches θ again)."""
        self.join(worker)
        state = self._workers[worker]
        if state.waits_for is not None and state.waits_for <= round_index:
            state.waits_for = None
        pushes = self._pushes.get(round_index)
        if at is None or not pushes:
            return
        seconds = max(0.0, at - max(pushes.values()))
        if state.update_seconds <= 0:
            state.update_seconds = seconds
        else:
            state.update_seconds += SYNC_ALPHA * (seconds - state.update_seconds)

    def update_due(self, worker: str, round_index: int) -> float | None:
        """With ``hide_sync``: when the update ``worker`` waits for at the sync point of
        ``round_index`` is due (the round before's last push so far + its update seconds, or the
        workers' mean while its own is unknown; ``math.inf`` while nobody's is known yet); None
        when it waits for none."""
        state = self._workers.get(worker)
        if not self._hide_sync or state is None or state.waits_for is None or state.waits_for != round_index - 1:
            return None
        pushes = self._pushes.get(state.waits_for)
        seconds = state.update_seconds or self._mean_update_seconds()
        if not pushes or seconds <= 0:
            return math.inf
        return max(pushes.values()) + seconds

    def began(self, worker: str, round_index: int, at: float) -> None:
        """``worker`` began ``round_index`` at ``at`` (it had the update of the round before)."""
        self.join(worker)
        self._workers[worker].start(round_index, at)
        plan = self._plans.get(round_index)
        if plan is None:
            self._plans[round_index] = RoundPlan(at)
            # NOTE: two rounds back: with overlapped sync a round's line is written (with its
            # planned seconds) once its update reached every worker, while the next one trains
            for old in [r for r in self._plans if r < round_index - 2]:
                del self._plans[old]
        else:
            plan.started = min(plan.started, at)

    def batch(self, worker: str, round_index: int, at: float, batches: int = 1) -> int | None:
        """A report of ``worker`` in ``round_index``, covering ``batches`` batches (the last
        one finished at ``at``), arrived at ``at``: batches it still runs after that last one
        before it sends its update (0 = now), or None while the round has no sync point."""
        self.join(worker)
        batches = max(1, batches)
        state = self._workers[worker]
        if state.round != round_index or round_index not in self._plans:
            self.began(worker, round_index, at)
        if state.last_at is not None:
            state.timer.add(at - state.last_at, batches)
        state.last_at = at
        before, state.done = state.done, state.done + batches
        if before < self.target_steps <= state.done:
            # the H-th batch was one of those reported: it ended that many batches before ``at``
            state.reached_at = at - (state.done - self.target_steps) * state.timer.seconds
        plan = self._plans[round_index]
        plan.deadline = self._sync_point(round_index, plan)
        if plan.deadline is None:
            return None
        seconds = state.timer.seconds or self._mean_known()
        left = batches_for(
            plan.deadline - at,
            seconds,
            self.target_steps,
            done=state.done,
            min_batches=self._min,
            max_factor=self._max_factor,
        )
        due = self.update_due(worker, round_index)
        if due is not None and seconds > 0 and due > at:
            # NOTE: rounded up: the sync point comes after the update, so that nobody waits for it
            wanted = UNKNOWN_UPDATE_BATCHES if math.isinf(due) else math.ceil((due - at) / seconds)
            upper = max(self._min, int(self._max_factor * self.target_steps))
            left = max(left, min(wanted, max(0, upper - state.done)))
        return left

    def _mean_known(self) -> float:
        known = [w.timer.seconds for w in self._workers.values() if w.timer.count]
        return sum(known) / len(known) if known else 0.0

    def _mean_update_seconds(self) -> float:
        known = [w.update_seconds for w in self._workers.values() if w.update_seconds > 0]
        return sum(known) / len(known) if known else 0.0

    def _sync_point(self, round_index: int, plan: RoundPlan) -> float | None:
        """The median of the workers' H-th batch times; None until every worker was timed (or
        one of them ran H batches of the round: a worker that never reports must not stall it)."""
        if plan.deadline is None:
            timed = [w for w in self._workers.values() if w.timer.count >= self._probe]
            someone_done = any(w.round == round_index and w.done >= self.target_steps for w in self._workers.values())
            if not timed or (len(timed) < len(self._workers) and not someone_done):
                return None
        ends = [
            end
            for w in self._workers.values()
            if w.round == round_index and (end := w.h_done_at(self.target_steps)) is not None
        ]
        return statistics.median(ends) if ends else plan.deadline
