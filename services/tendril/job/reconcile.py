"""After a JobService restart: end what the previous process left behind (no gRPC here).

NOTE (restart reconciliation): a job that was PENDING or RUNNING when the JobService process
died is not re-adopted. Its bridge died with the process, its token is deliberately never
stored, and its executor is no longer our child, so its exit code could not be read. Its
process group (found by the recorded pid and start time, and by the WORK_DIR in the
environment of any process still running) gets SIGTERM, the grace period, then SIGKILL, and
the job ends FAILED with reason "job service restarted"; its scheduler dispatches it again.

Work dirs left without a record (a dispatch cut short) are removed, and so are those of ended
jobs whose clean-up did not finish (unless ``job.keep_work_dirs``), their processes killed
first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from tendril.core.logs import get_logger
from tendril.job.executor import kill_stale_group, processes_with_env, same_process
from tendril.job.model import JobState
from tendril.job.store import JobStore
from tendril.job.workdir import WorkDirs

log = get_logger("tendril.jobs")

RESTART_REASON = "job service restarted"


async def kill_leftovers(work_dir: Path, pid: int | None, create_time: float | None, grace: float) -> None:
    """Stop every process group of a job we no longer own: its leader's, and any with its WORK_DIR."""
    groups: set[int] = set()
    if pid and same_process(pid, create_time):
        groups.add(pid)  # executors lead their own session: pgid == pid
    for proc in processes_with_env("WORK_DIR", str(work_dir)):
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    groups.discard(os.getpgid(0))
    await asyncio.gather(*(kill_stale_group(g, grace) for g in groups))


async def reconcile(store: JobStore, workdirs: WorkDirs, *, grace: float, clock: Callable[[], float]) -> None:
    """End jobs left PENDING/RUNNING, kill their processes, sweep stray work dirs."""
    leftovers = store.list([JobState.PENDING, JobState.RUNNING], limit=1_000_000)
    await asyncio.gather(*(kill_leftovers(Path(r.work_dir), r.pid, r.pid_create_time, grace) for r in leftovers))
    handled: set[str] = set()
    for record in leftovers:
        # The end first: a clean-up that fails is retried and never keeps the job unfinished.
        store.transition(record, JobState.FAILED, reason=RESTART_REASON, finished_at=clock())
        log.warning("job.reconciled", job_id=record.job_id, was=record.state.value, pid=record.pid)
        workdirs.clean_up(record.job_id, Path(record.work_dir))
        handled.add(record.job_id)
    for job_id, path in list(workdirs.leftovers()):
        if job_id in handled:
            continue
        record = store.get(job_id)
        if record is not None and workdirs.keep:
            continue
        await kill_leftovers(path, None, None, grace)
        if record is None:
            try:
                workdirs.discard(path)
            except OSError as exc:
                log.error("job.stray_work_dir_not_removed", path=str(path), error=repr(exc))
                continue
        elif not workdirs.clean_up(job_id, path):
            continue
        log.warning("job.stray_work_dir_removed", path=str(path))
