"""Sync-point planner: round budget, clamping, the step timer, and simulated rounds in which
workers of different and changing speeds share CPU cores and must reach the sync point together."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Callable

import pytest

from tendril.scheduler.errors import SchedulerError
from tendril.scheduler.planner import StepTimer, SyncPlanner, batches_for, round_budget


def plan_at_start(speeds: dict[str, float], target_steps: int) -> dict[str, int]:
    """Batches per worker as planned when the round starts (every worker has its whole budget left)."""
    budget = round_budget(speeds, target_steps)
    return {worker: batches_for(budget, seconds, target_steps) for worker, seconds in speeds.items()}


def test_equal_workers_run_h_batches() -> None:
    assert plan_at_start({"a": 0.1, "b": 0.1, "c": 0.1}, 20) == {"a": 20, "b": 20, "c": 20}


def test_faster_workers_run_more_and_all_finish_together() -> None:
    speeds = {"fast": 0.05, "mid": 0.1, "slow": 0.2}
    plan = plan_at_start(speeds, 30)
    assert plan["fast"] > plan["mid"] > plan["slow"]
    budget = round_budget(speeds, 30)
    assert budget == pytest.approx(30 * 0.1)
    finish = [plan[w] * speeds[w] for w in speeds]
    # Every worker ends within one of its batches of the budget.
    for w, t in zip(speeds, finish, strict=True):
        assert abs(t - budget) <= speeds[w] / 2 + 1e-9


def test_outliers_are_clamped() -> None:
    plan = plan_at_start({"stalled": 100.0, "a": 0.1, "b": 0.1}, 10)
    assert plan == {"stalled": 1, "a": 10, "b": 10}  # a straggler neither stretches the round nor gets 0
    plan = plan_at_start({"racer": 0.001, "a": 0.1, "b": 0.1}, 10)
    assert plan["racer"] == 40  # at most 4 × H


def test_unknown_speed_gets_h() -> None:
    assert batches_for(5.0, 0.0, 12) == 12
    assert batches_for(5.0, 0.0, 12, done=5) == 7


def test_batches_left_count_down_to_the_deadline() -> None:
    # 1 s left at 0.1 s per batch: 10 more, whatever was done before.
    assert batches_for(1.0, 0.1, 50, done=30) == 10
    assert batches_for(0.04, 0.1, 50, done=30) == 0  # closer to now than to one more batch: send now
    assert batches_for(0.06, 0.1, 50, done=30) == 1
    assert batches_for(-3.0, 0.1, 50, done=30) == 0  # past the deadline
    assert batches_for(-3.0, 0.1, 50, done=0) == 1  # ... but a round is never empty
    assert batches_for(100.0, 0.1, 50, done=150) == 50  # 4 × H in all at most
    assert batches_for(100.0, 0.1, 50, done=260) == 0


def test_no_timings_is_an_error() -> None:
    with pytest.raises(SchedulerError) as err:
        round_budget({}, 10)
    assert err.value.reason == "NO_TIMINGS"
    with pytest.raises(SchedulerError):
        round_budget({"a": 0.1}, 0)
    with pytest.raises(SchedulerError):
        SyncPlanner(0)


def test_timer_skips_the_first_batch_and_follows_a_lasting_change() -> None:
    timer = StepTimer(alpha=0.5, stall_factor=3.0)
    timer.add(5.0)  # start-up
    assert timer.count == 0 and timer.seconds == 0.0
    timer.add(0.1)
    assert timer.count == 1 and timer.seconds == pytest.approx(0.1)
    timer.add(0.3)
    assert timer.seconds == pytest.approx(0.2)
    timer.add(10.0)  # a stall counts as 3 × the estimate
    assert timer.seconds == pytest.approx(0.4)
    for _ in range(20):
        timer.add(1.0)
    assert timer.seconds == pytest.approx(1.0, rel=1e-3)


def test_a_round_without_timings_has_no_deadline_until_every_worker_is_timed() -> None:
    planner = SyncPlanner(10)
    for w in ("a", "b"):
        planner.join(w)
        planner.began(w, 0, 0.0)
    # The first interval ever pays for start-up and is left out: a is timed after its 4th report.
    assert [planner.batch("a", 0, t) for t in (0.1, 0.2, 0.3, 0.4)] == [None] * 4
    assert [planner.batch("b", 0, t) for t in (0.3, 0.6, 0.9)] == [None] * 3
    # b's second timed interval completes the probe. The sync point is the median (of two: the mean)
    # of when each will have run H = 10 batches: a at 0.4 + 6 × 0.1 = 1.0, b at 1.2 + 6 × 0.3 = 3.0.
    left = planner.batch("b", 0, 1.2)
    plan = planner.plan(0)
    assert plan is not None and plan.deadline == pytest.approx(2.0) and plan.budget == pytest.approx(2.0)
    assert left == 3  # (2.0 − 1.2) / 0.3 = 2.7 → 3 more
    assert planner.batch("a", 0, 0.5) == 15  # (2.0 − 0.5) / 0.1
    planner.leave("b")
    assert planner.seconds("b") == 0.0 and planner.seconds("a") == pytest.approx(0.1)


# -- simulated rounds ----------------------------------------------------------------------


@dataclasses.dataclass
class SimWorker:
    """A training worker: CPU seconds per batch (times ``slowdown(t)``), a fixed per-batch wait
    (data, report round trip) that uses no CPU, and the directive as the job bridge holds it.

    It reports every batch, or, with ``report_interval`` > 0, as the DiLoCo executor does: the
    round's first batch, then the batches since its last report once ``report_interval`` seconds
    passed, and every batch once at most ``near`` are left."""

    name: str
    cpu_seconds: float
    slowdown: Callable[[float], float] = lambda _t: 1.0
    overhead: float = 0.005
    phase: str = "wait"  # "cpu" (a batch), "wait" (the per-batch wait), "sync" (at the sync point)
    left: float = 0.0  # CPU seconds of the batch in progress, or when the wait ends
    done: int = 0
    target: int | None = None  # absolute: send after this many batches (the bridge's held answer)
    arrived: float = 0.0
    began: float = 0.0
    report_interval: float = 0.0
    near: int = 4
    unreported: int = 0  # batches since its last report
    reported_at: float = 0.0
    reports: int = 0  # batch reports in all


@dataclasses.dataclass
class SimRound:
    batches: dict[str, int]
    arrivals: dict[str, float]
    began: float
    closed: float

    @property
    def skew(self) -> float:
        return max(self.arrivals.values()) - min(self.arrivals.values())

    @property
    def wait_fraction(self) -> float:
        return self.skew / (self.closed - self.began)


def simulate(
    planner: SyncPlanner,
    workers: list[SimWorker],
    rounds: int,
    *,
    cores: float = 2.0,
    sync_seconds: float = 0.1,
    start_offsets: tuple[float, ...] = (0.0, 0.2, 0.5),
    jitter: float = 0.0,
    seed: int = 7,
    first_round: int = 0,
) -> list[SimRound]:
    """Run ``rounds`` DiLoCo rounds of ``workers`` sharing ``cores`` CPU cores.

    The planner sees what the scheduler sees: a batch report when a batch ends, and a worker
    that begins a round. As in the job bridge, the executor decides after batch j from the
    answer to report j − 1 (the answer to report j comes back while batch j + 1 runs).
    A round closes ``sync_seconds`` after the last worker arrived; everyone then begins the next.
    """
    rng = random.Random(seed)
    t = 0.0
    out: list[SimRound] = []
    for w in workers:
        planner.join(w.name)
    began = {w.name: start_offsets[i % len(start_offsets)] for i, w in enumerate(workers)}
    for r in range(first_round, first_round + rounds):
        for w in workers:
            w.phase, w.left, w.done, w.target, w.began = "wait", began[w.name], 0, None, began[w.name]
            planner.began(w.name, r, began[w.name])
        while any(w.phase != "sync" for w in workers):
            busy = [w for w in workers if w.phase == "cpu"]
            rate = min(1.0, cores / len(busy)) if busy else 1.0
            ends = [(w.left / rate if w.phase == "cpu" else w.left - t, i) for i, w in enumerate(workers)]
            dt, i = min((e, i) for e, i in ends if workers[i].phase != "sync")
            dt = max(dt, 0.0)
            t += dt
            for w in busy:
                w.left -= rate * dt
            w = workers[i]
            if w.phase == "wait":
                noise = 1.0 + jitter * (2 * rng.random() - 1)
                w.phase, w.left = "cpu", w.cpu_seconds * w.slowdown(t) * noise
                continue
            w.done += 1
            w.unreported += 1
            if w.target is not None and w.done >= w.target:  # the bridge's answer: send now
                w.phase, w.arrived = "sync", t
            else:
                w.phase, w.left = "wait", t + w.overhead
            due = (
                w.done == 1
                or (w.target is not None and w.target - w.done <= w.near)
                or t - w.reported_at >= w.report_interval
            )
            if not due:
                continue
            left = planner.batch(w.name, r, t, w.unreported)
            w.unreported, w.reported_at, w.reports = 0, t, w.reports + 1
            if left is not None:
                w.target = w.done + left
        arrivals = {w.name: w.arrived for w in workers}
        closed = max(arrivals.values()) + sync_seconds
        out.append(SimRound({w.name: w.done for w in workers}, arrivals, min(began.values()), closed))
        t = closed
        began = {w.name: closed + 0.01 * i for i, w in enumerate(workers)}
    return out


class PlanOnce(SyncPlanner):
    """The planner's answers frozen at the first one of each round (a plan made once per round)."""

    def __init__(self, target_steps: int) -> None:
        super().__init__(target_steps)
        self._total: dict[tuple[str, int], int] = {}
        self._done: dict[tuple[str, int], int] = {}

    def batch(self, worker: str, round_index: int, at: float, batches: int = 1) -> int | None:
        key = (worker, round_index)
        self._done[key] = self._done.get(key, 0) + batches
        left = super().batch(worker, round_index, at, batches)
        if left is None:
            return None
        total = self._total.setdefault(key, self._done[key] + left)
        return max(0, total - self._done[key])


def three_on_two_cores() -> list[SimWorker]:
    return [SimWorker("a", 0.040), SimWorker("b", 0.060), SimWorker("c", 0.090)]


def test_workers_sharing_cores_arrive_together_within_a_few_rounds() -> None:
    rounds = simulate(SyncPlanner(50), three_on_two_cores(), 8)
    # Round 0 spends its first batches timing the workers; from round 1 on they arrive together.
    for rnd in rounds[1:]:
        assert rnd.wait_fraction <= 0.02, rnd
    last = rounds[-1]
    assert last.batches["a"] > last.batches["b"] > last.batches["c"]  # faster workers run more
    # The median worker runs about H = 50 batches (its speed while everyone computes).
    assert 40 <= last.batches["b"] <= 60, last
    # A plan fixed at the round's start does not: the workers' speeds change as others stop.
    once = simulate(PlanOnce(50), three_on_two_cores(), 8)
    assert statistics.median(r.wait_fraction for r in once[1:]) > 0.05


def test_reports_covering_several_batches_plan_as_well_as_a_report_per_batch() -> None:
    """Workers that report every 0.25 s (every batch only near the sync point) reach the sync
    point together as closely as with a report per batch, with about the same batch counts,
    and report a fraction as often."""
    for jitter in (0.0, 0.2):
        each = three_on_two_cores()
        per_batch = simulate(SyncPlanner(50), each, 10, jitter=jitter)
        grouped = three_on_two_cores()
        for w in grouped:
            w.report_interval = 0.25
        together = simulate(SyncPlanner(50), grouped, 10, jitter=jitter)
        fractions = [r.wait_fraction for r in together[1:]]
        assert statistics.median(fractions) <= 0.01 and max(fractions) <= (0.03 if jitter else 0.01), fractions
        for mine, theirs in zip(together[1:], per_batch[1:], strict=True):
            for name, count in theirs.batches.items():
                assert abs(mine.batches[name] - count) <= 2, (mine, theirs)
        assert 45 <= together[-1].batches["b"] <= 55
        assert sum(w.reports for w in grouped) < 0.4 * sum(sum(r.batches.values()) for r in together)
        assert sum(w.reports for w in each) == sum(sum(r.batches.values()) for r in per_batch)


def test_a_report_of_several_batches_counts_each_of_them() -> None:
    planner = SyncPlanner(10)
    for w in ("a", "b"):
        planner.began(w, 0, 0.0)
    # a: one batch, then 4 in 0.4 s, 4 in 0.4 s: timed at 0.1 s a batch after 8 timed batches.
    assert planner.batch("a", 0, 0.1) is None
    assert planner.batch("a", 0, 0.5, 4) is None
    assert planner.seconds("a") == 0.0  # the run's first interval pays for start-up
    planner.batch("a", 0, 0.9, 4)
    assert planner.seconds("a") == pytest.approx(0.1)
    # b: 0.2 s a batch, in reports of 3 (the first interval left out as with a).
    planner.batch("b", 0, 0.2)
    planner.batch("b", 0, 0.8, 3)
    assert planner.batch("b", 0, 1.4, 3) is not None  # every worker timed: the sync point is set
    # H = 10: a's 10th batch ends at 0.9 + 1 × 0.1 = 1.0 (it ran 9), b's at 1.4 + 3 × 0.2 = 2.0.
    plan = planner.plan(0)
    assert plan is not None and plan.deadline == pytest.approx(1.5)
    # a reports batches 10-12 at 1.2: its 10th batch ended 2 × 0.1 s before, at 1.0 as foreseen
    # (the sync point stays at 1.5); 0.3 s are left: 3 more batches.
    assert planner.batch("a", 0, 1.2, 3) == 3
    assert plan.deadline == pytest.approx((1.0 + 2.0) / 2)
    # A report's EWMA weight is that of as many reports of one batch.
    one, many = StepTimer(alpha=0.2), StepTimer(alpha=0.2)
    for timer in (one, many):
        timer.add(1.0)
        timer.add(0.1)
    for _ in range(5):
        one.add(0.3)
    many.add(1.5, 5)
    assert many.seconds == pytest.approx(one.seconds) and many.count == one.count == 6


def test_noisy_batch_times_still_meet_the_target() -> None:
    workers = three_on_two_cores()
    rounds = simulate(SyncPlanner(50), workers, 12, jitter=0.4)
    fractions = [r.wait_fraction for r in rounds[2:]]
    assert statistics.median(fractions) <= 0.03 and max(fractions) <= 0.05, fractions


def test_a_slowed_down_worker_is_followed() -> None:
    # c gets 3 × slower 1 s into round 4 and stays so.
    slow_from: list[float] = []

    def slowdown(t: float) -> float:
        return 3.0 if slow_from and t >= slow_from[0] else 1.0

    workers = three_on_two_cores()
    workers[2].slowdown = slowdown
    planner = SyncPlanner(50)
    before = simulate(planner, workers, 4)
    slow_from.append(before[-1].closed + 1.0)
    after = simulate(planner, workers, 6, start_offsets=(before[-1].closed,) * 3, first_round=4)
    # The round in which it slowed down still ends together (c runs fewer batches), and so do the
    # rest: within half of c's (now long) batch, the resolution of a sync point counted in batches.
    for rnd in after:
        assert rnd.skew <= 0.5 * planner.seconds("c") and rnd.wait_fraction <= 0.04, rnd
    assert after[-1].batches["c"] < before[-1].batches["c"] * 0.6
    assert planner.seconds("c") > 2 * planner.seconds("b")


def test_a_late_joiner_runs_fewer_batches_and_arrives_with_the_others() -> None:
    planner = SyncPlanner(20)
    # a and b are known: 0.1 s per batch (their intervals of earlier rounds).
    for w in ("a", "b"):
        for k in range(4):
            planner.batch(w, 2, -10.0 + 0.1 * k)
        planner.began(w, 3, 0.0)
    assert planner.batch("a", 3, 0.1) == 19  # both will have run 20 batches at 2.0 s
    planner.join("late")  # a replacement that fetched θ mid-round, 1.5 s in
    planner.began("late", 3, 1.4)
    assert planner.batch("late", 3, 1.5) == 5  # the others' speed until it has its own: (2.0 − 1.5) / 0.1


def test_when_the_whole_machine_speeds_up_or_slows_down_the_median_worker_still_runs_h() -> None:
    # Other load on the machine halves everyone's speed every 7.3 s (mid-round, as it happens).
    workers = three_on_two_cores()
    for w in workers:
        w.slowdown = lambda t: 2.0 if int(t / 7.3) % 2 else 1.0
    rounds = simulate(SyncPlanner(50), workers, 12, jitter=0.2)
    fractions = [r.wait_fraction for r in rounds[1:]]
    assert statistics.median(fractions) <= 0.02 and max(fractions) <= 0.04, fractions
    # The round stretches with the machine (4.6 s to 8 s) but stays H batches of the typical worker.
    assert {r.batches["b"] for r in rounds} == {50}
    assert max(r.closed - r.began for r in rounds) > 1.5 * min(r.closed - r.began for r in rounds)


# -- overlapped sync: the sync point waits for the update it needs -------------------------


def _timed(planner: SyncPlanner, workers: tuple[str, ...], round_index: int, seconds: float) -> None:
    """Every worker timed at ``seconds`` per batch (intervals of round ``round_index``)."""
    for w in workers:
        for k in range(4):
            planner.batch(w, round_index, -10.0 + seconds * k)


def test_overlapped_sync_point_is_not_before_the_update_it_waits_for() -> None:
    planner = SyncPlanner(8, hide_sync=True)
    _timed(planner, ("a", "b", "c"), 2, 0.25)
    # Round 2's pushes; its update reached each worker 3.0 s after the last push.
    for w, t in (("a", 0.0), ("b", 0.1), ("c", 0.2)):
        planner.pushed(w, 2, t)
    for w in ("a", "b", "c"):
        planner.received(w, 2, 3.2)
    assert planner.update_seconds("a") == pytest.approx(3.0)
    # Round 3: pushed at 10.0-10.2; the update of round 3 is due at 10.2 + 3.0 = 13.2.
    for w, t in (("a", 10.0), ("b", 10.1), ("c", 10.2)):
        planner.pushed(w, 3, t)
        planner.began(w, 4, t)
    # The plan alone: H = 8 batches of 0.25 s, about 12.1 s. a waits for round 3's update, so it
    # trains until it is due: (13.2 − 10.25) / 0.25 = 11.8 → 12 more batches, not 7.
    assert planner.batch("a", 4, 10.25) == 12
    assert planner.update_due("a", 4) == pytest.approx(13.2)
    # b had its update already (it came early): the plan's sync point only.
    planner.received("b", 3, 11.0)
    assert planner.update_due("b", 4) is None
    # The sync point is the median of when a, b and c run their 8th batch: 12.0, 12.8, 12.2.
    assert planner.batch("b", 4, 11.05) == 5  # (12.2 − 11.05) / 0.25 = 4.6 → 5
    # c missed round 3 (it fetches θ again): it waits for nothing.
    planner.received("c", 3, None)
    assert planner.update_due("c", 4) is None
    # Blocking sync plans as before: the same reports, no wait for an update.
    blocking = SyncPlanner(8)
    _timed(blocking, ("a", "b", "c"), 2, 0.25)
    for w, t in (("a", 10.0), ("b", 10.1), ("c", 10.2)):
        blocking.pushed(w, 3, t)
        blocking.began(w, 4, t)
    assert blocking.update_due("a", 4) is None
    assert blocking.batch("a", 4, 10.25) == 7


def test_overlapped_sync_point_wait_is_clamped_and_uses_the_others_sync_time_first() -> None:
    planner = SyncPlanner(4, hide_sync=True, max_factor=2.0)
    _timed(planner, ("a", "b"), 0, 0.1)
    planner.pushed("a", 0, 0.0)
    planner.pushed("b", 0, 0.0)
    planner.received("a", 0, 5.0)  # b's own update seconds are unknown yet: a's (5 s) stand in
    planner.pushed("b", 1, 6.0)
    planner.began("b", 2, 6.0)
    planner.pushed("a", 1, 6.0)
    assert planner.update_due("b", 2) == pytest.approx(11.0)
    assert planner.batch("b", 2, 6.1) == 7  # 49 batches to 11.0, clamped at 2 × H = 8 in all


def test_before_any_update_came_the_round_goes_on_until_it_comes() -> None:
    planner = SyncPlanner(4, hide_sync=True)
    _timed(planner, ("a", "b"), 0, 0.1)
    planner.pushed("a", 0, 1.0)
    planner.pushed("b", 0, 1.0)
    for w in ("a", "b"):
        planner.began(w, 1, 1.0)
    assert planner.update_due("a", 1) == math.inf  # nobody had an update yet: its time is unknown
    # a's plan ends the round at about 1.4 s; until round 0's update came, 2 more on every report
    assert [planner.batch("a", 1, 1.0 + 0.1 * k) for k in range(1, 7)] == [3, 2, 2, 2, 2, 2]
    planner.received("a", 0, 1.65)  # it came: the plan's sync point (passed: now)
    assert planner.batch("a", 1, 1.7) == 0
    assert planner.update_seconds("a") == pytest.approx(0.65)
    # b's due time is now a's: round 0's last push + 0.65 s
    assert planner.update_due("b", 1) == pytest.approx(1.65)


def simulate_overlapped(
    planner: SyncPlanner, speeds: dict[str, float], rounds: int, sync_seconds: dict[str, float]
) -> dict[str, float]:
    """Overlapped sync, one worker per core: each reports every batch, pushes round r at its sync
    point and trains round r+1 while the update travels; it has round r's update
    ``sync_seconds[w]`` after the round's last push, and at its next sync point waits for it if it
    has not come. Reports UPDATE_RECEIVED when it applied the update (after the batch in progress,
    or at the sync point). The fraction of each worker's time it did not train (after round 0)."""
    import heapq

    pushes: dict[int, dict[str, float]] = {}
    busy = {w: 0.0 for w in speeds}
    idle = {w: 0.0 for w in speeds}
    events = [(0.01 * i + s, w) for i, (w, s) in enumerate(speeds.items())]
    heapq.heapify(events)
    state = {w: {"round": 0, "done": 0, "target": None, "waits": None, "stop": None} for w in speeds}
    for w in speeds:
        planner.join(w)
        planner.began(w, 0, 0.0)

    def update_at(w: str, r: int) -> float | None:
        got = pushes.get(r, {})
        return max(got.values()) + sync_seconds[w] if len(got) == len(speeds) else None

    while events:
        t, w = heapq.heappop(events)
        st = state[w]
        r = st["round"]
        if st["stop"] is None:  # a batch ended
            st["done"] += 1
            if r >= 1:
                busy[w] += speeds[w]
            due = update_at(w, st["waits"]) if st["waits"] is not None else None
            if due is not None and due <= t:
                planner.received(w, st["waits"], t)
                st["waits"] = None
            left = planner.batch(w, r, t)
            if left is not None:
                st["target"] = st["done"] + left
            if st["target"] is None or st["done"] < st["target"]:
                heapq.heappush(events, (t + speeds[w], w))
                continue
            st["stop"] = t
        # at its sync point: the update of the round before first
        if st["waits"] is not None:
            due = update_at(w, st["waits"])
            if due is None:  # not every worker pushed it yet: look again a little later
                heapq.heappush(events, (t + 0.01, w))
                continue
            if due > t:
                heapq.heappush(events, (due, w))
                continue
            planner.received(w, st["waits"], t)
        if r >= 1:
            idle[w] += t - st["stop"]
        if r + 1 >= rounds:
            continue
        pushes.setdefault(r, {})[w] = t
        planner.pushed(w, r, t)
        st.update(round=r + 1, done=0, target=None, waits=r, stop=None)
        planner.began(w, r + 1, t)
        heapq.heappush(events, (t + speeds[w], w))
    return {w: idle[w] / (idle[w] + busy[w]) for w in speeds}


def test_overlapped_workers_train_through_a_sync_longer_than_a_round() -> None:
    speeds = {"a": 0.25, "b": 0.25, "c": 0.3}
    sync = {"a": 0.4, "b": 2.9, "c": 3.1}  # a hosts the parameter server; H = 8 batches is about 2 s
    waiting = simulate_overlapped(SyncPlanner(8), speeds, 10, sync)
    # The plan alone: b and c idle at their sync points (a, whose update is local, runs longer rounds).
    assert waiting["b"] > 0.2 and waiting["c"] > 0.2, waiting
    hidden = simulate_overlapped(SyncPlanner(8, hide_sync=True), speeds, 10, sync)
    assert max(hidden.values()) < 0.05, hidden
    # Where the sync is shorter than a round, nothing changes: nobody waits either way.
    short = {w: 0.3 for w in speeds}
    assert simulate_overlapped(SyncPlanner(8, hide_sync=True), speeds, 10, short) == simulate_overlapped(
        SyncPlanner(8), speeds, 10, short
    )
