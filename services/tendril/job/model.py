"""Job records and their state machine (no gRPC here).

PENDING → RUNNING → SUCCEEDED / FAILED / CANCELLED; PENDING may also end directly in FAILED or
CANCELLED (the executor never started). An ended job never changes again: the store refuses
every other transition.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.ids import JOB_ID
from tendril.job.errors import JobError, JobReason, JobRecordReason


class JobState(enum.Enum):
    """Where a job is in its life (names match the proto enum without its prefix)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_transition(job_id: str, old: JobState, new: JobState) -> None:
    """Raise JobError (FAILED_PRECONDITION) unless ``old`` → ``new`` is a legal move."""
    if new not in TRANSITIONS[old]:
        raise JobError(
            ErrorKind.FAILED_PRECONDITION,
            f"job {job_id} cannot go from {old.value} to {new.value}"
            + (" (it has already ended)" if old.terminal else ""),
            reason=JobRecordReason.ILLEGAL_TRANSITION,
            metadata={"job_id": job_id, "from": old.value, "to": new.value},
        )


def validate_job_id(job_id: str) -> None:
    """Raise JobError (INVALID_ARGUMENT) unless ``job_id`` is a :data:`~tendril.core.ids.JOB_ID`."""
    problem = JOB_ID.problem(job_id, "job_id")
    if problem is not None:
        raise JobError(
            ErrorKind.INVALID_ARGUMENT, problem, reason=JobReason.BAD_JOB_ID, metadata={"job_id": job_id[:80]}
        )


@dataclasses.dataclass
class JobRecord:
    """One job as the store keeps it."""

    job_id: str
    lease_id: str
    owner_id: str
    executor_class: str
    executor_name: str
    state: JobState
    created_at: float
    work_dir: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    coordinator_address: str = ""
    timeout_seconds: float = 0.0
    exit_code: int | None = None
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    pid: int | None = None
    pid_create_time: float | None = None
    progress: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def copy(self) -> JobRecord:
        return dataclasses.replace(self, config=dict(self.config), progress=dict(self.progress))
