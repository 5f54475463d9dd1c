"""The scheduler's one error type and its reasons.

SchedulerReason (what its AllocationService and CoordinationService answer) is the wire
catalogue in :mod:`tendril_sdk.reasons`; SchedulerRunReason says why a run (`tendril
scheduler run`, `make demo`) stopped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import SchedulerReason

__all__ = ["SchedulerError", "SchedulerReason", "SchedulerRunReason"]


class SchedulerRunReason(enum.StrEnum):
    """Why a run could not start or finish; the command exits with it (no RPC answers it)."""

    NO_DATA_NODE = "NO_DATA_NODE"  # the gateway registry lists no data node (or several) for the data set
    NO_MANIFEST = "NO_MANIFEST"  # the data node did not answer GetManifest
    EMPTY_DATASET = "EMPTY_DATASET"  # the data set has no slices
    BAD_MODEL_SOURCE = "BAD_MODEL_SOURCE"  # a tendril-data:// model source names another data set or no asset of it
    BAD_SLOTS = "BAD_SLOTS"  # the slice assigner was given fewer than one slot
    BAD_PLAN = "BAD_PLAN"  # the round planner was given fewer than one target step
    NO_TIMINGS = "NO_TIMINGS"  # the round planner was asked before any batch time was known
    ALLOCATION_TIMEOUT = "ALLOCATION_TIMEOUT"  # the run did not get its workers within allocation.timeout_seconds
    PS_NOT_READY = "PS_NOT_READY"  # the parameter server did not open the run in time
    JOB_ENDED = "JOB_ENDED"  # a job ended before the run was done, or did not succeed
    RUN_FAILED = "RUN_FAILED"  # the run lost a member it cannot go on without
    NO_FINAL_MODEL = "NO_FINAL_MODEL"  # the trained parameters could not be pulled at the end
    NO_FREE_PORTS = "NO_FREE_PORTS"  # the demo cluster found no free ports for its processes
    START_FAILED = "START_FAILED"  # a demo cluster process exited while starting
    START_TIMEOUT = "START_TIMEOUT"  # a demo cluster process did not serve in time
    NOT_RESUMABLE = "NOT_RESUMABLE"  # a saved run cannot go on: its parameter server lost it or does not answer


class SchedulerError(TendrilError):
    """Something the reference scheduler refuses or cannot do (see ``reason``)."""

    service = "scheduler"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: SchedulerReason | SchedulerRunReason,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)
