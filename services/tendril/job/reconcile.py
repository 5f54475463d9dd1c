"""After a JobService restart: re-adopt what still runs, end what the previous process left (no gRPC here).

NOTE (restart reconciliation): an executor runs under its shim (:mod:`tendril.job.shim`), in
a session of its own, so it outlives the JobService that started it, and its shim records its
exit code in the work dir. For each job the store shows PENDING or RUNNING:

* RUNNING, its shim still runs (same pid and start time, started for this work dir), and its
  re-adoption record (:class:`~tendril.job.store.Runtime`: shim and bridge token) is there →
  **re-adopted**: returned to the caller, which rebuilds the bridge on the same socket with
  the same token and follows the shim again as if it had started it. A stop that was asked
  for before the crash (cancel, lease end) and had not ended the job yet is asked for again.
* RUNNING, the shim is gone but it recorded the executor's exit (``exit.json``) → the job ends
  with that **real exit code** (SUCCEEDED for 0, else FAILED; the reason says it ended while
  the JobService was down). A job that was being stopped (cancel, lease end, shutdown) when
  the JobService died and is gone now ends as that stop asked (CANCELLED and its reason).
* anything else cannot be re-adopted: PENDING (its dispatch was cut short, so its scheduler
  was never told it runs), or the shim is gone without an exit record (someone killed it), or
  no re-adoption record was kept. Its process group (found by the recorded pid and start
  time) and every process with its WORK_DIR get SIGTERM, the grace period, then SIGKILL, and
  the job ends FAILED with a reason that starts with "job service restarted" and says why.

A container executor's container is removed with its processes (its name comes from the job
id and the work dir: :func:`tendril.job.container.container_name`); a re-adopted one is left
to its shim, which removes it when the executor ends.

Jobs that end here get their work dir cleaned up like any job, and ``release`` is told so that
what their bridge held outside the JobService (the job at the DataFetcher) is closed.

Work dirs left without a record (a dispatch cut short) are removed, and so are those of ended
jobs whose clean-up did not finish (unless ``job.keep_work_dirs``), their processes killed
first. The work dirs of re-adopted jobs are left alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from tendril.core.logs import get_logger
from tendril.job.executor import ExecutorProcess, describe_exit, kill_leftovers
from tendril.job.model import JobRecord, JobState
from tendril.job.shim import read_exit
from tendril.job.store import JobStore
from tendril.job.workdir import WorkDirs

log = get_logger("tendril.jobs")

# (job id, work dir, (executor class, name) or None when unknown) -> the commands that remove
# what the job may have left outside its process group (its container).
CleanupOf = Callable[[str, Path, tuple[str, str] | None], list[list[str]]]


def no_cleanup(job_id: str, work_dir: Path, executor: tuple[str, str] | None) -> list[list[str]]:
    return []


RESTART_REASON = "job service restarted"


def lost_reason(why: str) -> str:
    """The reason of a job a restarted JobService could not re-adopt."""
    return f"job service restarted and could not re-adopt it: {why}; its executor was stopped"


@dataclasses.dataclass(frozen=True)
class Adoptable:
    """A job whose executor still runs under its shim: to be followed again."""

    record: JobRecord
    process: ExecutorProcess
    token: str = dataclasses.field(repr=False)
    stop: tuple[JobState, str] | None = None  # asked for before the restart, not done yet


async def _settle(
    store: JobStore, record: JobRecord, *, grace: float, clock: Callable[[], float], cleanup_of: CleanupOf = no_cleanup
) -> Adoptable | JobRecord:
    """Re-adopt ``record``'s executor, or end the job; the Adoptable, or the ended record."""
    work_dir = Path(record.work_dir)
    cleanup = cleanup_of(record.job_id, work_dir, (record.executor_class, record.executor_name))
    runtime = store.runtime(record.job_id) if record.state is JobState.RUNNING else None
    if runtime is not None:
        process = ExecutorProcess.adopt(
            work_dir,
            shim_pid=runtime.shim_pid,
            shim_create_time=runtime.shim_create_time,
            pid=record.pid or 0,
            create_time=record.pid_create_time,
            cleanup=cleanup,
        )
        if process is not None:
            return Adoptable(record, process, runtime.bridge_token, runtime.stop)
    code = read_exit(str(work_dir), record.pid) if runtime is not None else None
    # Whatever the executor left (normally nothing: its shim swept its group) is stopped first.
    await kill_leftovers(work_dir, record.pid, record.pid_create_time, grace, cleanup)
    if runtime is not None and runtime.stop is not None:
        state, reason = runtime.stop  # it was being stopped, and it is gone: it ended as asked
    elif code is not None:
        state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
        reason = f"{describe_exit(code)} while the JobService was down"
    else:
        state, code = JobState.FAILED, None
        if record.state is JobState.PENDING:
            why = "it was still being dispatched"
        elif runtime is None:
            why = "no record of its shim was kept"
        else:
            why = f"its shim (pid {runtime.shim_pid}) is gone and recorded no exit"
        reason = lost_reason(why)
    # The end first: a clean-up that fails is retried and never keeps the job unfinished.
    return store.transition(record, state, exit_code=code, reason=reason, finished_at=clock())


async def reconcile(
    store: JobStore,
    workdirs: WorkDirs,
    *,
    grace: float,
    clock: Callable[[], float],
    release: Callable[[JobRecord], None] = lambda record: None,
    cleanup_of: CleanupOf = no_cleanup,
) -> list[Adoptable]:
    """End the PENDING/RUNNING jobs that cannot be re-adopted, sweep stray work dirs; the rest to re-adopt."""
    leftovers = store.list([JobState.PENDING, JobState.RUNNING], limit=1_000_000)
    adoptable: list[Adoptable] = []
    handled = {record.job_id for record in leftovers}
    outcomes = await asyncio.gather(
        *(_settle(store, r, grace=grace, clock=clock, cleanup_of=cleanup_of) for r in leftovers)
    )
    for record, settled in zip(leftovers, outcomes, strict=True):
        if isinstance(settled, Adoptable):
            adoptable.append(settled)
            continue
        log.warning(
            "job.reconciled",
            job_id=record.job_id,
            was=record.state.value,
            state=settled.state.value,
            reason=settled.reason,
            pid=record.pid,
        )
        workdirs.clean_up(record.job_id, Path(record.work_dir))
        release(settled)
    for job_id, path in list(workdirs.leftovers()):
        if job_id in handled:
            continue
        ended = store.get(job_id)
        if ended is not None and workdirs.keep:
            continue
        executor = (ended.executor_class, ended.executor_name) if ended is not None else None
        await kill_leftovers(path, None, None, grace, cleanup_of(job_id, path, executor))
        if ended is None:
            try:
                workdirs.discard(path)
            except OSError as exc:
                log.error("job.stray_work_dir_not_removed", path=str(path), error=repr(exc))
                continue
        elif not workdirs.clean_up(job_id, path):
            continue
        log.warning("job.stray_work_dir_removed", path=str(path))
    workdirs.sweep_handoffs()
    return adoptable
