"""A run's configuration and its round state machine (pure: no I/O, time passed in).

A round is OPEN while it takes pushes. It is due to close when every expected worker
committed, or when at least ``quorum`` committed and ``round_timeout_seconds`` passed since
its first commit. The expected workers are ``expected_workers`` of them (a count), or, once the
run's scheduler named them (``expected``, SetExpectedWorkers), those workers: a worker the
scheduler declared lost is not waited for, and the quorum is at most the number named.
While its update is computed it is CLOSING (no more pushes); then the next round opens, or,
after the last of ``rounds``, the run is FINISHED.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from tendril.core.codecs import CODECS
from tendril.core.errors import ErrorKind
from tendril.paramserver.errors import ParameterServerError, ParamserverReason

DEFAULT_LR = 0.7
DEFAULT_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How a run aggregates (OpenJob's fields, defaults applied)."""

    expected_workers: int
    quorum: int
    round_timeout_seconds: float  # <= 0: no timeout, every expected worker must commit
    outer_lr: float = DEFAULT_LR
    outer_momentum: float = DEFAULT_MOMENTUM
    codec: str = "fp32"
    rounds: int = 0  # 0: unbounded

    @classmethod
    def build(
        cls,
        *,
        expected_workers: int,
        quorum: int = 0,
        round_timeout_seconds: float = 0.0,
        outer_lr: float | None = None,
        outer_momentum: float | None = None,
        codec: str = "fp32",
        rounds: int = 0,
    ) -> RunConfig:
        """Validate OpenJob's values; None (unset) means the default for lr and momentum, 0 means 0.

        A quorum of 0 is no quorum (a round needs a commit to close): it means the default, 1.
        """
        outer_lr = DEFAULT_LR if outer_lr is None else outer_lr
        outer_momentum = DEFAULT_MOMENTUM if outer_momentum is None else outer_momentum

        def bad(message: str) -> ParameterServerError:
            return ParameterServerError(ErrorKind.INVALID_ARGUMENT, message, reason=ParamserverReason.BAD_RUN_CONFIG)

        if expected_workers < 1:
            raise bad("expected_workers must be at least 1")
        quorum = quorum or 1
        if quorum > expected_workers:
            raise bad(f"quorum {quorum} is more than expected_workers {expected_workers}")
        for name, value in (("round_timeout_seconds", round_timeout_seconds), ("outer_lr", outer_lr)):
            if not math.isfinite(value) or value < 0:
                raise bad(f"{name} must be a finite number >= 0, got {value}")
        if not math.isfinite(outer_momentum) or not 0 <= outer_momentum < 1:
            raise bad(f"outer_momentum must be in [0, 1), got {outer_momentum}")
        if codec not in CODECS:
            raise bad(f"codec must be one of {', '.join(CODECS)}")
        return cls(
            expected_workers=expected_workers,
            quorum=quorum,
            round_timeout_seconds=round_timeout_seconds,
            outer_lr=outer_lr,
            outer_momentum=outer_momentum,
            codec=codec,
            rounds=rounds,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Phase(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    FINISHED = "finished"


@dataclasses.dataclass
class RoundMachine:
    """Where a run's current round is; raises ParameterServerError for pushes it must refuse."""

    run_id: str
    config: RunConfig
    round: int = 0
    phase: Phase = Phase.OPEN
    committed: dict[str, float] = dataclasses.field(default_factory=dict)  # worker -> weight
    first_commit_at: float | None = None
    expected: frozenset[str] = frozenset()  # the workers named by the run's scheduler; empty: by count

    def _refuse(self, kind: ErrorKind, reason: ParamserverReason, message: str) -> ParameterServerError:
        return ParameterServerError(kind, message, reason=reason, metadata={"run_id": self.run_id})

    def check_push(self, round: int, worker_id: str) -> None:
        """Raise unless ``worker_id`` may push for ``round`` now."""
        if not worker_id:
            raise self._refuse(
                ErrorKind.INVALID_ARGUMENT, ParamserverReason.WORKER_ID_MISSING, "the stream header needs a worker_id"
            )
        if self.phase is Phase.FINISHED:
            raise self._refuse(
                ErrorKind.FAILED_PRECONDITION,
                ParamserverReason.RUN_FINISHED,
                f"run {self.run_id} finished all {self.config.rounds} rounds; round {round} takes no pushes",
            )
        if round < self.round or (round == self.round and self.phase is Phase.CLOSING):
            open_round = self.round + 1 if self.phase is Phase.CLOSING else self.round
            raise self._refuse(
                ErrorKind.FAILED_PRECONDITION,
                ParamserverReason.ROUND_CLOSED,
                f"round {round} of run {self.run_id} is closed; round {open_round} is open: pull round "
                f"{round}'s update (or the current parameters) and push for round {open_round}",
            )
        if round > self.round:
            raise self._refuse(
                ErrorKind.FAILED_PRECONDITION,
                ParamserverReason.ROUND_NOT_OPEN,
                f"round {round} of run {self.run_id} is not open yet; round {self.round} is open",
            )
        if worker_id in self.committed:
            raise self._refuse(
                ErrorKind.ALREADY_EXISTS,
                ParamserverReason.ALREADY_COMMITTED,
                f"worker {worker_id} already committed an update for round {round} of run {self.run_id}",
            )

    def commit(self, worker_id: str, weight: float, now: float) -> None:
        self.check_push(self.round, worker_id)
        self.committed[worker_id] = weight
        if self.first_commit_at is None:
            self.first_commit_at = now

    @property
    def expected_count(self) -> int:
        """How many workers a round expects (the named ones, else the configured count)."""
        return len(self.expected) if self.expected else self.config.expected_workers

    def close_due(self, now: float) -> bool:
        if self.phase is not Phase.OPEN or not self.committed:
            return False
        if self.expected:
            if self.expected <= self.committed.keys():
                return True
        elif len(self.committed) >= self.config.expected_workers:
            return True
        quorum = min(self.config.quorum, self.expected_count)
        deadline = self.deadline()
        return deadline is not None and now >= deadline and len(self.committed) >= quorum

    def deadline(self) -> float | None:
        """When a quorum may close the round (None: no timeout, or nothing committed yet)."""
        if self.first_commit_at is None or self.config.round_timeout_seconds <= 0:
            return None
        return self.first_commit_at + self.config.round_timeout_seconds

    def begin_close(self) -> list[tuple[str, float]]:
        """Stop taking pushes; the contributions in a fixed order (sorted by worker id)."""
        if self.phase is not Phase.OPEN:
            raise RuntimeError(f"round {self.round} is {self.phase.value}, not open")
        self.phase = Phase.CLOSING
        return sorted(self.committed.items())

    def forget_commits(self) -> dict[str, float]:
        """The round's commits can no longer count (their sum was lost): take pushes from scratch."""
        lost, self.committed = self.committed, {}
        self.first_commit_at = None
        if self.phase is Phase.CLOSING:
            self.phase = Phase.OPEN
        return lost

    def abort_close(self) -> None:
        """The update could not be computed: take pushes again (contributions are kept)."""
        self.phase = Phase.OPEN

    def finish_close(self) -> None:
        """The round's update is served: open the next round, or finish the run."""
        self.committed = {}
        self.first_commit_at = None
        if self.config.rounds and self.round + 1 >= self.config.rounds:
            self.phase = Phase.FINISHED
            return
        self.round += 1
        self.phase = Phase.OPEN
