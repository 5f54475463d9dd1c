"""Sync points: how many batches each worker runs in a round so that all finish together.

A round has a time budget T = H × (median over workers of their mean batch seconds): the
typical worker runs H batches (the median, so that one straggler cannot stretch every round).
Worker i runs n_i = round(T / s_i) batches, so a worker twice as fast runs twice as many and
every worker sends its update after about T seconds — nobody waits long at the parameter
server. n_i is clamped to [min_batches, max_factor × H] so that
a timing outlier (a first batch that paid for start-up, a stall) cannot make a round empty
or endless.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping

from tendril.core.errors import ErrorKind
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason


def round_budget(mean_batch_seconds: Mapping[str, float], target_steps: int) -> float:
    """Seconds a round should last: ``target_steps`` batches of the median worker."""
    if target_steps < 1:
        raise SchedulerError(
            ErrorKind.INVALID_ARGUMENT, "target_steps must be >= 1", reason=SchedulerRunReason.BAD_PLAN
        )
    times = [s for s in mean_batch_seconds.values() if s > 0]
    if not times:
        raise SchedulerError(
            ErrorKind.FAILED_PRECONDITION,
            "no worker has reported a batch time yet",
            reason=SchedulerRunReason.NO_TIMINGS,
        )
    return target_steps * statistics.median(times)


def batches_for(
    budget_seconds: float, batch_seconds: float, target_steps: int, *, min_batches: int = 1, max_factor: float = 4.0
) -> int:
    """Batches a worker taking ``batch_seconds`` per batch runs in ``budget_seconds``."""
    upper = max(min_batches, int(max_factor * target_steps))
    if batch_seconds <= 0:
        return min(max(target_steps, min_batches), upper)
    return min(max(round(budget_seconds / batch_seconds), min_batches), upper)


def plan_batches(
    mean_batch_seconds: Mapping[str, float], target_steps: int, *, min_batches: int = 1, max_factor: float = 4.0
) -> dict[str, int]:
    """Batches per worker for one round (see the module docstring)."""
    budget = round_budget(mean_batch_seconds, target_steps)
    return {
        worker: batches_for(budget, seconds, target_steps, min_batches=min_batches, max_factor=max_factor)
        for worker, seconds in mean_batch_seconds.items()
    }


class BatchTimer:
    """A worker's recent batch times; the very first one (it pays for start-up) is left out."""

    def __init__(self, window: int = 32) -> None:
        self._times: deque[float] = deque(maxlen=window)
        self._seen = 0

    def add(self, seconds: float) -> None:
        self._seen += 1
        if self._seen == 1 or seconds <= 0:
            return
        self._times.append(seconds)

    @property
    def count(self) -> int:
        return len(self._times)

    @property
    def mean(self) -> float:
        """Mean of the window, 0.0 before any timing counted."""
        return statistics.fmean(self._times) if self._times else 0.0
