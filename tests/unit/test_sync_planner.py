"""Sync-point planner: equal finishing times, clamping, the batch timer."""

from __future__ import annotations

import pytest

from tendril.scheduler.errors import SchedulerError
from tendril.scheduler.planner import BatchTimer, batches_for, plan_batches, round_budget


def test_equal_workers_run_h_batches() -> None:
    assert plan_batches({"a": 0.1, "b": 0.1, "c": 0.1}, 20) == {"a": 20, "b": 20, "c": 20}


def test_faster_workers_run_more_and_all_finish_together() -> None:
    speeds = {"fast": 0.05, "mid": 0.1, "slow": 0.2}
    plan = plan_batches(speeds, 30)
    assert plan["fast"] > plan["mid"] > plan["slow"]
    budget = round_budget(speeds, 30)
    assert budget == pytest.approx(30 * 0.1)
    finish = [plan[w] * speeds[w] for w in speeds]
    # Every worker ends within one of its batches of the budget.
    for w, t in zip(speeds, finish, strict=True):
        assert abs(t - budget) <= speeds[w] / 2 + 1e-9


def test_outliers_are_clamped() -> None:
    plan = plan_batches({"stalled": 100.0, "a": 0.1, "b": 0.1}, 10)
    assert plan == {"stalled": 1, "a": 10, "b": 10}  # a straggler neither stretches the round nor gets 0
    plan = plan_batches({"racer": 0.001, "a": 0.1, "b": 0.1}, 10)
    assert plan["racer"] == 40  # at most 4 × H


def test_unknown_speed_gets_h() -> None:
    assert batches_for(5.0, 0.0, 12) == 12


def test_no_timings_is_an_error() -> None:
    with pytest.raises(SchedulerError) as err:
        round_budget({}, 10)
    assert err.value.reason == "NO_TIMINGS"
    with pytest.raises(SchedulerError):
        round_budget({"a": 0.1}, 0)


def test_timer_skips_the_first_batch() -> None:
    timer = BatchTimer(window=3)
    timer.add(5.0)  # start-up
    assert timer.count == 0 and timer.mean == 0.0
    for s in (0.1, 0.2, 0.3, 0.4):
        timer.add(s)
    assert timer.count == 3 and timer.mean == pytest.approx(0.3)
