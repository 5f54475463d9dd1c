"""What a dispatch asks for, and the checks that need nothing but the request and the config
(no gRPC, no lease, no store here)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tendril.core.config import ExecutorConfig, WorkerConfig, split_address
from tendril.core.errors import ErrorKind
from tendril.job.errors import JobError, JobReason
from tendril.job.model import validate_job_id


@dataclasses.dataclass(frozen=True)
class DispatchSpec:
    """A dispatch request, translated from the wire."""

    job_id: str
    lease_id: str
    executor_class: str
    executor_name: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    timeout_seconds: float = 0.0
    coordinator_address: str = ""


def validate(config: WorkerConfig, caller: str, spec: DispatchSpec) -> ExecutorConfig:
    """The configured executor ``spec`` names; JobError for a request that can never succeed."""
    if not caller:
        raise JobError(
            ErrorKind.UNAUTHENTICATED,
            "the caller did not say who it is; send metadata 'tendril-peer-id' with your scheduler id",
            reason=JobReason.CALLER_UNKNOWN,
        )
    validate_job_id(spec.job_id)
    if not spec.lease_id:
        raise JobError(
            ErrorKind.INVALID_ARGUMENT,
            "lease_id is required: the id of a renewable lease you hold on this worker",
            reason=JobReason.LEASE_ID_MISSING,
        )
    if not spec.executor_class or not spec.executor_name:
        raise JobError(
            ErrorKind.INVALID_ARGUMENT,
            "executor.executor_class and executor.name are required (e.g. 'example' / 'echo')",
            reason=JobReason.EXECUTOR_MISSING,
        )
    if not math.isfinite(spec.timeout_seconds) or spec.timeout_seconds < 0:
        raise JobError(
            ErrorKind.INVALID_ARGUMENT,
            f"timeout must be a positive duration or unset, got {spec.timeout_seconds} s",
            reason=JobReason.BAD_TIMEOUT,
        )
    if spec.coordinator_address:
        try:
            split_address(spec.coordinator_address)
        except ValueError as exc:
            raise JobError(
                ErrorKind.INVALID_ARGUMENT,
                f"coordinator_address {spec.coordinator_address!r} is not host:port",
                reason=JobReason.BAD_COORDINATOR_ADDRESS,
            ) from exc
    executor = config.executor(spec.executor_class, spec.executor_name)
    if executor is None:
        known = ", ".join(f"{e.executor_class}/{e.name}" for e in config.executors) or "none"
        raise JobError(
            ErrorKind.FAILED_PRECONDITION,
            f"executor {spec.executor_class}/{spec.executor_name} is not configured on this worker "
            f"(configured: {known})",
            reason=JobReason.EXECUTOR_NOT_CONFIGURED,
            metadata={"executor_class": spec.executor_class, "name": spec.executor_name},
        )
    return executor
