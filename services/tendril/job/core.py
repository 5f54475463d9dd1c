"""JobManager: the JobService's logic, with no gRPC in it — the orchestrator of a job's life.

It checks a dispatch (:mod:`.spec`, the lease, the limits), makes the job's work dir
(:mod:`.workdir`), starts its bridge and executor (:mod:`.executor`, under a shim), follows the
executor until it ends (:mod:`.runner`: exit, cancel, lease end, timeout, shutdown), records
the end in the :class:`JobStore`, cleans up and publishes every change to watchers. After a
restart it first re-adopts the executors that still run — their bridge rebuilt on the same
socket with the same token — and ends what cannot be re-adopted (:mod:`.reconcile`). The lease
check and the bridge are injected (:class:`LeaseDirectory`, :data:`BridgeStarter`,
:data:`BridgeReleaser`), so tests can drive the core directly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import secrets
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from tendril.bridge.core import ProgressSink
from tendril.core import liveness, metrics
from tendril.core.config import ExecutorConfig, WorkerConfig
from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout
from tendril.core.logs import get_logger
from tendril.core.watch import Watch
from tendril.job import gpus
from tendril.job.argv import render_argv
from tendril.job.container import Containers, container_env, container_name, run_argv
from tendril.job.errors import JobError, JobReason
from tendril.job.executor import ExecutorProcess, executor_env
from tendril.job.joblog import LogReader
from tendril.job.model import JobRecord, JobState
from tendril.job.readiness import FAILED_DISPATCH_HOLD_SECONDS, check_folders
from tendril.job.reconcile import Adoptable, lost_reason
from tendril.job.reconcile import reconcile as end_leftovers
from tendril.job.results import RESULTS_DIR, Manifest, ResultsStore, results_gone
from tendril.job.runner import LOST, BridgeHandle, JobEnd, JobRun
from tendril.job.spec import DispatchSpec
from tendril.job.spec import validate as validate_spec
from tendril.job.store import JobStore, Runtime
from tendril.job.workdir import LOG_NAME, WorkDirs
from tendril_sdk.job import REMOTE_CODE_ENV, JobDescriptor

log = get_logger("tendril.jobs")

# A graceful stop of the JobService must end within 10 s (issue 3), jobs included: SIGTERM
# grace, then SIGKILL, bridge and server shutdown must all fit.
SHUTDOWN_GRACE_CAP_SECONDS = 5.0
FOLLOW_POLL_SECONDS = 0.2
WATCH_QUEUE = 1000
LIST_LIMIT_MAX = 1000
ENDED_LEASES_KEPT = 1024
CLEANUP_RETRY_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class LeaseInfo:
    """What the JobService needs to know about a lease."""

    lease_id: str
    owner_id: str
    renewable: bool
    expires_at: float
    gpus: int = 0  # whole GPUs the lease holds
    cpu: float = 0.0  # CPU cores the lease holds (a container executor's --cpus)
    memory_gib: float = 0.0  # memory the lease holds (a container executor's --memory)


class LeaseDirectory(Protocol):
    """Looks leases up (the LeaseService, in production)."""

    async def get(self, lease_id: str) -> LeaseInfo | None:
        """The live lease, or None when there is none with that id."""
        ...


BridgeStarter = Callable[[JobDescriptor, str, ProgressSink], Awaitable[BridgeHandle]]
# Told (ready, why not) whenever the worker's ability to run jobs changes (see readiness.py).
ReadinessListener = Callable[[bool, str], Awaitable[None]]
# Closes what a job's bridge held outside the JobService (its job at the DataFetcher), for a job
# that ended while no bridge of it ran (it ended while the JobService was down).
BridgeReleaser = Callable[[JobDescriptor], Awaitable[None]]
RELEASE_TIMEOUT_SECONDS = 10.0


class _NoBridge:
    """Stands in for a bridge that could not be rebuilt (the job is being stopped)."""

    async def stop(self) -> None:
        return None


class JobManager:
    """Every job of this worker: dispatch, supervision, records, watch and logs."""

    def __init__(
        self,
        config: WorkerConfig,
        store: JobStore,
        leases: LeaseDirectory,
        start_bridge: BridgeStarter,
        *,
        release_bridge: BridgeReleaser | None = None,
        python: str = sys.executable,
        clock: Callable[[], float] = time.time,
        containers: Containers | None = None,
    ) -> None:
        self.config = config
        # NOTE: finds the runtime of every container executor now: a worker without one refuses to start.
        self.containers = containers if containers is not None else Containers(config)
        self.store = store
        self.leases = leases
        self.start_bridge = start_bridge
        self.release_bridge = release_bridge
        self.python = python
        self.clock = clock
        self.results = ResultsStore(config.state_dir / RESULTS_DIR, clock=clock)
        self.workdirs = WorkDirs(
            config.work_dir,
            config.state_dir / "logs",
            worker_id=config.worker_id,
            keep=config.job.keep_work_dirs,
            results=self.results,
            handoff_dir=Path(config.job.handoff_dir) if config.job.handoff_dir else None,
        )
        self.events: Fanout[JobRecord] = Fanout()
        self._runs: dict[str, JobRun] = {}
        self._claimed: set[str] = set()  # job ids whose dispatch is in progress
        self._ended_leases: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._devices: tuple[str, ...] | None = None  # the worker's GPUs, found at the first job that leases one
        self._gpu_claims: dict[str, tuple[str, tuple[str, ...]]] = {}  # job id -> (lease, devices) while starting
        # Readiness (readiness.py): why this worker cannot run jobs now ("" while it can).
        self.unready = ""
        self.on_readiness: ReadinessListener | None = None
        self._suspect_until = 0.0  # monotonic: a dispatch failed on the disk or the database
        # Ended jobs whose end could not be written to jobs.db yet (a full or read-only disk):
        # answered from here, written by check_ready once the database takes it.
        self._unrecorded: dict[str, JobRecord] = {}

    # -- dispatch ------------------------------------------------------------------------

    def _validate(self, caller: str, spec: DispatchSpec) -> ExecutorConfig:
        if self._stopping:
            raise JobError(
                ErrorKind.UNAVAILABLE,
                "the JobService is stopping; dispatch to another worker or retry once it is back",
                reason=JobReason.SHUTTING_DOWN,
            )
        executor = validate_spec(self.config, caller, spec)
        self.workdirs.check_socket_path(spec.job_id)
        return executor

    async def _check_lease(self, caller: str, lease_id: str) -> LeaseInfo:
        lease = await self.leases.get(lease_id)
        if lease is None or lease_id in self._ended_leases:
            raise JobError(
                ErrorKind.NOT_FOUND,
                f"lease {lease_id} is not live on this worker (unknown, released or expired); "
                "win a new lease before dispatching",
                reason=JobReason.LEASE_NOT_FOUND,
                metadata={"lease_id": lease_id},
            )
        if lease.owner_id != caller:
            raise JobError(
                ErrorKind.PERMISSION_DENIED,
                f"lease {lease_id} belongs to {lease.owner_id}, not to {caller}; dispatch under a lease you hold",
                reason=JobReason.LEASE_NOT_OWNED,
                metadata={"lease_id": lease_id},
            )
        if not lease.renewable:
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"lease {lease_id} is still temporary (its offer was not accepted yet); accept the offer first",
                reason=JobReason.LEASE_NOT_RENEWABLE,
                metadata={"lease_id": lease_id},
            )
        if lease.expires_at <= self.clock():
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"lease {lease_id} has expired; renew leases before they run out",
                reason=JobReason.LEASE_EXPIRED,
                metadata={"lease_id": lease_id},
            )
        return lease

    async def dispatch(self, caller: str, spec: DispatchSpec) -> JobRecord:
        """Start a job; on any failure nothing of it is left (no dir, record, process, socket).

        A failure of the disk or the database makes the worker unready at once (and is answered
        UNAVAILABLE CANNOT_RUN_JOBS): the next scheduler goes elsewhere.
        """
        if self.unready and not self._stopping:
            raise self._cannot_run(self.unready)
        try:
            return await self._dispatch(caller, spec)
        except (OSError, sqlite3.Error) as exc:
            why = f"a dispatch failed on the disk or jobs.db ({type(exc).__name__}: {exc})"
            await self._set_unready(why, suspect=True)
            raise self._cannot_run(why) from exc
        except JobError as exc:
            if exc.kind is ErrorKind.INTERNAL:
                await self._set_unready(f"a dispatch failed: {exc.message}", suspect=True)
            raise

    @staticmethod
    def _cannot_run(why: str) -> JobError:
        return JobError(
            ErrorKind.UNAVAILABLE,
            f"this worker cannot run jobs now: {why}; dispatch to another worker",
            reason=JobReason.CANNOT_RUN_JOBS,
        )

    async def _dispatch(self, caller: str, spec: DispatchSpec) -> JobRecord:
        executor = self._validate(caller, spec)
        if spec.job_id in self._claimed or self.store.exists(spec.job_id):
            raise JobError(
                ErrorKind.ALREADY_EXISTS,
                f"job {spec.job_id} already exists on this worker; job ids are never reused, pick a new one",
                reason=JobReason.JOB_EXISTS,
                metadata={"job_id": spec.job_id},
            )
        limit = self.config.job.max_concurrent_jobs
        if len(self._runs) + len(self._claimed) >= limit:
            raise JobError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"this worker already runs {limit} jobs (job.max_concurrent_jobs); wait for one to end",
                reason=JobReason.TOO_MANY_JOBS,
                metadata={"max_concurrent_jobs": str(limit)},
            )
        self._claimed.add(spec.job_id)
        try:
            lease = await self._check_lease(caller, spec.lease_id)
            run = await self._launch(caller, spec, executor, self._claim_gpus(spec, lease), lease)
        finally:
            self._claimed.discard(spec.job_id)
            self._gpu_claims.pop(spec.job_id, None)
        self._register(run)
        log.info("job.started", job_id=spec.job_id, lease_id=spec.lease_id, peer=caller, pid=run.process.pid)
        self.events.publish(run.record.copy())
        if spec.lease_id in self._ended_leases:
            self._in_background(self._stop(run, JobState.CANCELLED, f"lease {spec.lease_id} ended"))
        return run.record.copy()

    def _claim_gpus(self, spec: DispatchSpec, lease: LeaseInfo) -> tuple[str, ...]:
        """The GPU devices the job sees (see tendril.job.gpus), held from now on."""
        if lease.gpus > 0 and self._devices is None:
            self._devices = gpus.worker_devices(self.config.resources.gpu)
        held = [(run.record.lease_id, run.gpus) for run in self._runs.values()] + list(self._gpu_claims.values())
        devices = gpus.assign(spec.lease_id, lease.gpus, self._devices or (), held)
        self._gpu_claims[spec.job_id] = (spec.lease_id, devices)
        return devices

    async def _launch(
        self,
        caller: str,
        spec: DispatchSpec,
        executor: ExecutorConfig,
        devices: tuple[str, ...] = (),
        lease: LeaseInfo | None = None,
    ) -> JobRun:
        paths = self.workdirs.placeholders(spec.job_id)
        # a bad template fails before anything exists
        argv = render_argv(executor.command, {**paths, "PYTHON": self.python})
        work_dir = self.workdirs.path_of(spec.job_id)
        runtime = self.containers.runtime_of(spec.executor_class, spec.executor_name)
        record = JobRecord(
            job_id=spec.job_id,
            lease_id=spec.lease_id,
            owner_id=caller,
            executor_class=spec.executor_class,
            executor_name=spec.executor_name,
            state=JobState.PENDING,
            created_at=self.clock(),
            work_dir=str(work_dir),
            config=dict(spec.config),
            coordinator_address=spec.coordinator_address,
            timeout_seconds=spec.timeout_seconds or self.config.job.default_timeout_seconds,
        )
        self.store.insert(record)
        created_dir = False
        bridge: BridgeHandle | None = None
        process: ExecutorProcess | None = None
        try:
            job = self.workdirs.descriptor(record)
            self.workdirs.create(job, handoff=runtime is None)  # (a container mounts the work dir only)
            created_dir = True
            token = secrets.token_urlsafe(32)
            bridge = await self.start_bridge(job, token, self.report_progress)
            env = executor_env(executor, paths, token)
            env[gpus.CUDA_ENV] = ",".join(devices)
            env[REMOTE_CODE_ENV] = "1" if self.config.job.allow_remote_code else "0"
            cleanup: list[list[str]] = []
            if runtime is not None and executor.container is not None:
                argv = run_argv(
                    runtime,
                    executor.container,
                    argv,
                    name=container_name(spec.job_id, work_dir),
                    job_id=spec.job_id,
                    work_dir=work_dir,
                    env_names=list(env),
                    devices=devices,
                    cpus=lease.cpu if lease is not None else 0.0,
                    memory_gib=lease.memory_gib if lease is not None else 0.0,
                )
                env = container_env(env, devices)
                cleanup = self.containers.cleanup(spec.job_id, work_dir, (spec.executor_class, spec.executor_name))
            process = await ExecutorProcess.spawn(
                argv, env=env, cwd=work_dir, log_path=work_dir / LOG_NAME, cleanup=cleanup
            )
            metrics.EXECUTORS_STARTED.inc()
            record = self.store.transition(
                record,
                JobState.RUNNING,
                # NOTE: kept so that a restarted JobService can re-adopt the job (see reconcile.py).
                runtime=Runtime(process.shim_pid, process.shim_create_time, token),
                started_at=self.clock(),
                pid=process.pid,
                pid_create_time=process.create_time,
            )
        except BaseException:
            undo = self._undo_launch(spec.job_id, work_dir if created_dir else None, bridge, process)
            await asyncio.shield(asyncio.ensure_future(undo))
            raise
        return JobRun(record=record, process=process, bridge=bridge, gpus=devices)

    async def _undo_launch(
        self, job_id: str, work_dir: Path | None, bridge: BridgeHandle | None, process: ExecutorProcess | None
    ) -> None:
        if process is not None:
            await process.terminate(0.0)
            await process.collect(0.0)
        if bridge is not None:
            try:
                await bridge.stop()
            except Exception as exc:
                log.warning("job.bridge_stop_failed", job_id=job_id, error=repr(exc))
        # NOTE: on a failing disk these may fail too; the dispatch's own error is what counts.
        try:
            if work_dir is not None:
                self.workdirs.discard(work_dir)
            self.store.delete_pending(job_id)
        except (OSError, sqlite3.Error) as exc:
            log.error("job.undo_failed", job_id=job_id, error=repr(exc))

    # -- supervision ---------------------------------------------------------------------

    def _register(self, run: JobRun) -> None:
        self._runs[run.record.job_id] = run
        metrics.JOBS_ACTIVE.set(len(self._runs))
        run.task = asyncio.create_task(self._supervise(run), name=f"job-{run.record.job_id}")

    async def _supervise(self, run: JobRun) -> None:
        end = LOST
        record = run.record
        time_left = None
        if record.timeout_seconds and record.started_at is not None:
            time_left = record.timeout_seconds - (self.clock() - record.started_at)
        try:
            end = await run.wait_end(self.config.job.kill_grace_seconds, time_left)
        finally:
            await self._finish(run, end)

    async def _finish(self, run: JobRun, end: JobEnd) -> None:
        """Record the job's end, clean up after it, tell the watchers.

        NOTE: the end is recorded before the clean-up: the executor is gone, whatever happens
        to its files. A clean-up that fails is queued for a retry (:class:`WorkDirs`) and can
        never leave the job RUNNING (with its lease renewed for nothing). Watchers hear of the
        end once the clean-up was tried, so "ended" means "cleaned up or queued for it".
        """
        job_id = run.record.job_id
        try:
            try:
                await run.bridge.stop()
            except Exception as exc:
                log.warning("job.bridge_stop_failed", job_id=job_id, error=repr(exc))
            fields: dict[str, Any] = {
                "exit_code": end.exit_code,
                "reason": end.reason,
                "finished_at": self.clock(),
                "progress": dict(run.progress),
            }
            try:
                record = self.store.transition(run.record, end.state, **fields)
            except (OSError, sqlite3.Error) as exc:
                # NOTE: the executor is gone whatever the disk says: the end is answered from
                # memory (never RUNNING) and written once the database takes it (check_ready).
                record = run.record.copy()
                record.state = end.state
                for key, value in fields.items():
                    setattr(record, key, value)
                self._unrecorded[job_id] = record
                log.error("job.end_not_recorded", job_id=job_id, state=end.state.value, error=repr(exc))
                await self._set_unready(f"the end of job {job_id} could not be recorded ({exc})", suspect=True)
            except Exception as exc:
                log.error("job.finish_failed", job_id=job_id, error=repr(exc))
                record = self.store.get(job_id) or run.record
            self.workdirs.retry()  # earlier failures first: a job's end is a good moment to try again
            self.workdirs.clean_up(job_id, Path(run.record.work_dir))
        finally:
            self._runs.pop(job_id, None)
            metrics.JOBS_ACTIVE.set(len(self._runs))
            run.done.set()
        metrics.JOBS_COMPLETED.labels(state=record.state.value.lower()).inc()
        log.info("job.ended", job_id=job_id, state=record.state.value, reason=record.reason, exit_code=end.exit_code)
        self.events.publish(record)

    async def _stop(self, run: JobRun, state: JobState, reason: str, grace: float | None = None) -> None:
        """Ask ``run`` to end as ``state`` (SIGTERM, grace, SIGKILL) and wait until it is cleaned up."""
        if run.request_stop(state, reason, self.config.job.kill_grace_seconds if grace is None else grace):
            # NOTE: kept, so that a JobService that dies before the executor is gone still ends
            # the job as asked once restarted (the caller's Cancel broke off with it).
            try:
                self.store.note_stop(run.record.job_id, state, reason)
            except Exception as exc:
                log.warning("job.stop_not_recorded", job_id=run.record.job_id, error=repr(exc))
        await run.done.wait()

    def _in_background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- queries -------------------------------------------------------------------------

    def _live(self, record: JobRecord) -> JobRecord:
        unrecorded = self._unrecorded.get(record.job_id)
        if unrecorded is not None:
            return unrecorded.copy()
        run = self._runs.get(record.job_id)
        if run is not None and not record.terminal:
            record.progress = dict(run.progress)
        return record

    def get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id) if job_id else None
        if record is None:
            raise JobError(
                ErrorKind.NOT_FOUND,
                f"no job {job_id!r} on this worker; List shows the jobs it has",
                reason=JobReason.JOB_NOT_FOUND,
                metadata={"job_id": job_id[:80]},
            )
        return self._live(record)

    def list(self, states: Iterable[JobState] = (), limit: int = 0) -> list[JobRecord]:
        count = min(limit or 100, LIST_LIMIT_MAX)
        wanted = set(states)
        records = [self._live(r) for r in self.store.list(states, count)]
        if self._unrecorded and wanted:
            # NOTE: a job whose end is not written yet is RUNNING in the database: the filter
            # by state runs again on what it is; its ended form is added when that is asked for.
            records = [r for r in records if r.state in wanted]
            shown = {r.job_id for r in records}
            records += [r.copy() for r in self._unrecorded.values() if r.state in wanted and r.job_id not in shown]
            records.sort(key=lambda r: r.created_at, reverse=True)
            records = records[:count]
        return records

    def _snapshot(self, job_id: str) -> Iterable[JobRecord]:
        """The one job (JOB_NOT_FOUND when there is none) or every live job, as they are now."""
        if job_id:
            return [self.get(job_id)]
        return [self._live(run.record.copy()) for run in self._runs.values()]

    def watch(self, job_id: str = "", name: str = "") -> Watch[JobRecord]:
        """One job (its state now, then each change until it ends) or every job (live ones, then changes)."""
        return Watch(
            self.events,
            lambda: self._snapshot(job_id),
            queue=WATCH_QUEUE,
            overflow=lambda exc: JobError(
                ErrorKind.ABORTED,
                f"this watch fell {WATCH_QUEUE} changes behind and was cut off; start a new Watch",
                reason=JobReason.WATCH_OVERFLOW,
            ),
            name=name or job_id or "all",
            accepts=(lambda r: r.job_id == job_id) if job_id else None,
            until=(lambda r: r.terminal) if job_id else None,
        )

    async def logs(self, job_id: str, tail_lines: int = 0, follow: bool = False) -> AsyncIterator[str]:
        """The executor's output: the last ``tail_lines`` lines (0: all), then new output while following."""
        record = self.get(job_id)
        f = self.workdirs.open_log(job_id, record.work_dir)
        if f is None:
            return
        reader = LogReader(f, tail_lines)
        try:
            ended = not follow
            while True:
                text, count = reader.read()
                if text:
                    yield text
                if count:
                    continue
                if ended:
                    break
                run = self._runs.get(job_id)
                if run is None:
                    ended = True  # the executor is gone: read what is left, then stop
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.done.wait(), FOLLOW_POLL_SECONDS)
            rest = reader.finish()
            if rest:
                yield rest
        finally:
            reader.close()

    # -- results (results.py) -----------------------------------------------------------

    def _ended_own(self, caller: str, job_id: str) -> JobRecord:
        """The ended job ``job_id`` of ``caller`` (JOB_NOT_FOUND, NOT_JOB_OWNER, JOB_NOT_ENDED otherwise)."""
        record = self.get(job_id)
        if record.owner_id != caller:
            raise JobError(
                ErrorKind.PERMISSION_DENIED,
                f"job {job_id} belongs to {record.owner_id}; only its owner may read or delete its results",
                reason=JobReason.NOT_JOB_OWNER,
                metadata={"job_id": job_id},
            )
        if not record.terminal:
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"job {job_id} is {record.state.value}; its results are kept once it ended (Watch it until then)",
                reason=JobReason.JOB_NOT_ENDED,
                metadata={"job_id": job_id, "state": record.state.value},
            )
        return record

    def results_manifest(self, caller: str, job_id: str) -> Manifest:
        """The manifest of an ended job's kept results (owner only)."""
        record = self._ended_own(caller, job_id)
        manifest = self.results.manifest(job_id)
        if manifest is not None:
            return manifest
        if job_id in self.workdirs.backlog or (Path(record.work_dir) / RESULTS_DIR).is_dir():
            raise JobError(
                ErrorKind.UNAVAILABLE,
                f"job {job_id} ended but the clean-up that keeps its results failed and is retried; retry shortly",
                reason=JobReason.RESULTS_NOT_READY,
                metadata={"job_id": job_id},
            )
        raise results_gone(job_id)

    def fetch_result(self, caller: str, job_id: str, path: str, offset: int) -> Iterator[tuple[int, bytes, int]]:
        """(offset, data, size) chunks of one file of an ended job's results, from ``offset`` (owner only)."""
        manifest = self.results_manifest(caller, job_id)
        return self.results.read(manifest, path, offset)

    def delete_results(self, caller: str, job_id: str) -> int:
        """Delete an ended job's kept results (owner only); returns the bytes freed (0: gone already)."""
        self._ended_own(caller, job_id)
        freed = self.results.delete(job_id)
        log.info("job.results_deleted", job_id=job_id, peer=caller, freed_bytes=freed)
        return freed

    def prune_results(self) -> tuple[str, ...]:
        """Delete results past job.keep_results_days, then the oldest beyond job.keep_results_mib."""
        section = self.config.job
        deleted = self.results.prune(section.keep_results_days * 86400.0, section.keep_results_mib * 2**20)
        if deleted:
            log.info("job.results_pruned", jobs=len(deleted))
        return tuple(deleted)

    async def prune_results_forever(self, interval: float) -> None:
        """:meth:`prune_results` now and every ``interval`` seconds (until cancelled)."""
        while True:
            try:
                with liveness.idle():  # waiting on the disk
                    await asyncio.to_thread(self.prune_results)
            except (OSError, ValueError) as exc:  # NOTE: tried again at the next hour; never worth a restart
                log.warning("job.results_prune_failed", error=repr(exc))
            liveness.beat()
            await asyncio.sleep(interval)

    # -- cancel, leases, progress --------------------------------------------------------

    async def cancel(self, caller: str, job_id: str, reason: str = "") -> JobRecord:
        """Cancel (owner only) and wait until the executor is gone and the job cleaned up."""
        record = self.get(job_id)
        if record.owner_id != caller:
            raise JobError(
                ErrorKind.PERMISSION_DENIED,
                f"job {job_id} belongs to {record.owner_id}; only its owner may cancel it",
                reason=JobReason.NOT_JOB_OWNER,
                metadata={"job_id": job_id},
            )
        if record.terminal:
            return record
        run = self._runs.get(job_id)
        if run is None:
            raise JobError(
                ErrorKind.UNAVAILABLE,
                f"job {job_id} is still being dispatched; retry the cancel in a moment",
                reason=JobReason.JOB_STARTING,
            )
        await self._stop(run, JobState.CANCELLED, reason or f"cancelled by its owner {caller}")
        return self.get(job_id)

    def on_lease_ended(self, lease_id: str, why: str) -> None:
        """A lease was released or expired: cancel its jobs (in the background)."""
        self._ended_leases[lease_id] = None
        while len(self._ended_leases) > ENDED_LEASES_KEPT:
            self._ended_leases.popitem(last=False)
        for run in list(self._runs.values()):
            if run.record.lease_id == lease_id:
                log.info("job.lease_ended", job_id=run.record.job_id, lease_id=lease_id, why=why)
                self._in_background(self._stop(run, JobState.CANCELLED, f"lease {lease_id} {why}"))

    async def check_leases(self) -> None:
        """Cancel the jobs whose lease is gone (after the lease watch (re)connects)."""
        for lease_id in {run.record.lease_id for run in self._runs.values()}:
            if await self.leases.get(lease_id) is None:
                self.on_lease_ended(lease_id, "is no longer live")

    def report_progress(self, job_id: str, values: dict[str, float]) -> None:
        run = self._runs.get(job_id)
        if run is not None:
            run.progress.update(values)

    @property
    def running(self) -> int:
        return len(self._runs)

    # -- start and stop ------------------------------------------------------------------

    async def reconcile(self) -> None:
        """After a restart: re-adopt the running executors, end the jobs that cannot be, sweep stray work dirs."""
        adoptable = await end_leftovers(
            self.store,
            self.workdirs,
            grace=self.config.job.kill_grace_seconds,
            clock=self.clock,
            release=self._release,
            cleanup_of=self.containers.cleanup,
        )
        for found in adoptable:
            await self._adopt(found)

    async def _adopt(self, found: Adoptable) -> None:
        """Follow a running executor again: its bridge rebuilt on the same socket with the same token.

        NOTE: the executor's bridge calls failed with UNAVAILABLE while no bridge listened; the
        SDK retries those (60 s), so they go through once this bridge serves. A bridge that
        cannot be rebuilt leaves the executor cut off: the job is stopped and ends FAILED.
        """
        record, process = found.record, found.process
        failure = ""
        bridge: BridgeHandle
        try:
            bridge = await self.start_bridge(self.workdirs.descriptor(record), found.token, self.report_progress)
        except Exception as exc:
            bridge, failure = _NoBridge(), lost_reason(f"its bridge could not be rebuilt ({exc})")
        run = JobRun(record=record, process=process, bridge=bridge, progress=dict(record.progress))
        self._register(run)
        grace = self.config.job.kill_grace_seconds
        if failure:
            log.error("job.readopt_failed", job_id=record.job_id, pid=process.pid, reason=failure)
            run.request_stop(JobState.FAILED, failure, grace)
            return
        log.info(
            "job.readopted", job_id=record.job_id, lease_id=record.lease_id, pid=process.pid, shim_pid=process.shim_pid
        )
        if found.stop is not None:
            log.info("job.stop_resumed", job_id=record.job_id, state=found.stop[0].value, reason=found.stop[1])
            run.request_stop(*found.stop, grace)

    def _release(self, record: JobRecord) -> None:
        """Close, in the background, what the bridge of a job that ended without one held outside."""
        if self.release_bridge is None:
            return
        job = self.workdirs.descriptor(record)
        release = self.release_bridge

        async def release_quietly() -> None:
            try:
                await asyncio.wait_for(release(job), RELEASE_TIMEOUT_SECONDS)
            except Exception as exc:
                log.warning("job.release_failed", job_id=record.job_id, error=repr(exc))

        self._in_background(release_quietly())

    # -- readiness -------------------------------------------------------------------------

    async def _set_unready(self, why: str, *, suspect: bool = False) -> None:
        if suspect:
            self._suspect_until = time.monotonic() + FAILED_DISPATCH_HOLD_SECONDS
        if self.unready == why:
            return
        if not self.unready:
            log.error("job.cannot_run_jobs", reason=why, hint="no offers, dispatches refused until this passes")
        self.unready = why
        if self.on_readiness is not None:
            await self.on_readiness(False, why)

    async def check_ready(self) -> str:
        """Check the disk and the database once (readiness.py); returns why jobs cannot run ("" if they can)."""
        folders = [self.config.state_dir, self.config.work_dir]
        min_free = self.config.job.min_free_mib * 2**20
        suspect = self._suspect_until > 0.0
        with liveness.idle():  # waiting on the disk (see service.py)
            why = await asyncio.to_thread(check_folders, folders, min_free)
        if why is None:
            why = self.store.check(thorough=suspect)
        if why is None:
            why = self._record_unrecorded()
        if why is None and time.monotonic() < self._suspect_until:
            return self.unready  # a failed dispatch holds a while (readiness.py)
        if why is not None:
            await self._set_unready(why)
            return why
        self._suspect_until = 0.0
        if self.unready:
            log.info("job.can_run_jobs_again", was=self.unready)
            self.unready = ""
            if self.on_readiness is not None:
                await self.on_readiness(True, "")
        return ""

    def _record_unrecorded(self) -> str | None:
        """Write the ends kept in memory; why one could not be written (None: all written)."""
        for job_id, ended in list(self._unrecorded.items()):
            try:
                stored = self.store.get(job_id)
                if stored is not None and not stored.terminal:
                    self.store.transition(
                        stored,
                        ended.state,
                        exit_code=ended.exit_code,
                        reason=ended.reason,
                        finished_at=ended.finished_at,
                        progress=ended.progress,
                    )
            except (OSError, sqlite3.Error) as exc:
                return f"the end of job {job_id} could not be recorded yet ({exc})"
            except JobError as exc:  # the stored record moved on meanwhile: it wins
                del self._unrecorded[job_id]
                log.warning("job.end_superseded", job_id=job_id, error=exc.message)
                continue
            del self._unrecorded[job_id]
            log.info("job.end_recorded", job_id=job_id, state=ended.state.value)
        return None

    async def retry_cleanups_forever(self) -> None:
        """Retry failed clean-ups every CLEANUP_RETRY_SECONDS (until cancelled)."""
        await self.workdirs.retry_forever(CLEANUP_RETRY_SECONDS)

    async def shutdown(self) -> None:
        """Refuse new jobs, cancel every running one (bounded grace), end every watch."""
        self._stopping = True
        grace = min(self.config.job.kill_grace_seconds, SHUTDOWN_GRACE_CAP_SECONDS)
        runs = list(self._runs.values())
        await asyncio.gather(*(self._stop(r, JobState.CANCELLED, "the JobService is stopping", grace) for r in runs))
        for task in list(self._background):
            task.cancel()
        self.events.close_all()
