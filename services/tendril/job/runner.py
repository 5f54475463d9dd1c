"""A started job: its executor process and bridge, until the executor is gone (no gRPC here).

:meth:`JobRun.wait_end` waits for whichever comes first — the executor exits, someone asks
the job to stop (cancel, lease end, shutdown: :meth:`JobRun.request_stop`), or the job's
timeout passes — then stops the executor's process group (SIGTERM, the grace period, SIGKILL),
collects its exit code from its shim and says how the job ended. The first stop request wins.
A run is the same whether this JobService started the executor or re-adopted it after a
restart (:mod:`.reconcile`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Protocol

from tendril.job.executor import ExecutorProcess, describe_exit
from tendril.job.model import JobRecord, JobState
from tendril_sdk.job import read_error


class BridgeHandle(Protocol):
    """A started job bridge."""

    async def stop(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class JobEnd:
    """How a job ended."""

    state: JobState
    reason: str
    exit_code: int | None = None


LOST = JobEnd(JobState.FAILED, "the JobService lost track of the executor")


@dataclasses.dataclass(eq=False)
class JobRun:
    """A job whose executor was started and has not been cleaned up yet."""

    record: JobRecord
    process: ExecutorProcess
    bridge: BridgeHandle
    progress: dict[str, float] = dataclasses.field(default_factory=dict)
    stop_event: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    stop_request: tuple[JobState, str] | None = None
    grace: float = 0.0
    task: asyncio.Task[None] | None = None
    gpus: tuple[str, ...] = ()  # the devices in its CUDA_VISIBLE_DEVICES (see tendril.job.gpus)

    def request_stop(self, state: JobState, reason: str, grace: float) -> bool:
        """Ask the job to end as ``state`` with ``grace`` seconds between SIGTERM and SIGKILL.

        True when this request is the one that counts (the first).
        """
        if self.stop_request is not None:
            return False
        self.stop_request = (state, reason)
        self.grace = grace
        self.stop_event.set()
        return True

    async def wait_end(self, timeout_grace: float, time_left: float | None = None) -> JobEnd:
        """Until the executor is gone (stopped if need be); ``timeout_grace`` applies after a timeout.

        ``time_left``: seconds until the job's timeout (a re-adopted job has used part of it);
        None means the whole ``timeout_seconds`` of the record (0: no timeout).
        """
        timeout = self.record.timeout_seconds or None
        if timeout is not None and time_left is not None:
            timeout = max(0.0, time_left)
        waits = [asyncio.create_task(self.process.wait_exited()), asyncio.create_task(self.stop_event.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if not self.process.exited:
            if self.stop_request is None:
                self.request_stop(
                    JobState.FAILED,
                    f"timed out after {self.record.timeout_seconds:g} s; the executor was stopped "
                    "(SIGTERM, then SIGKILL)",
                    timeout_grace,
                )
            await self.process.terminate(self.grace)
        code = await self.process.collect(self.grace)
        if self.stop_request is not None:
            return JobEnd(*self.stop_request, code)
        if code is None:
            return JobEnd(JobState.FAILED, self.process.lost_reason())
        if code == 0:
            return JobEnd(JobState.SUCCEEDED, describe_exit(code), code)
        return JobEnd(JobState.FAILED, failure_reason(code, Path(self.record.work_dir)), code)


def failure_reason(code: int, work_dir: Path) -> str:
    """The exit code in words, then the executor's own one-line reason (tendril_sdk ERROR_FILE_NAME) if it left one."""
    why = read_error(work_dir)
    return f"{describe_exit(code)}: {why}" if why else describe_exit(code)
