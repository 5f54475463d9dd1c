"""JobManager: the JobService's logic, with no gRPC in it.

It validates a dispatch, makes the job's work dir, starts the job's bridge and executor,
watches the executor until it ends (exit, cancel, lease end, timeout, shutdown), cleans up,
and keeps every state change in the :class:`JobStore`. The lease check and the bridge are
injected (:class:`LeaseDirectory`, :data:`BridgeStarter`), so tests can drive the core directly.

Work dir ``<work_dir>/job-<id>/`` (0700): ``job.json``, ``bridge.sock``, ``executor.log``,
``artifacts/``, ``data/``, ``updates/``, ``params/``. The executor runs with the work dir as
its current directory.

NOTE: when a job ends its ``executor.log`` is copied to ``<state_dir>/logs/job-<id>.log``
before the work dir is removed, so ``Logs`` keeps working for ended jobs (whether or not
``job.keep_work_dirs`` is set).

NOTE (restart reconciliation): a job that was PENDING or RUNNING when the JobService process
died is not re-adopted. Its bridge died with the process, its token is deliberately never
stored, and its executor is no longer our child, so its exit code could not be read. Its
process group (found by the recorded pid and start time, and by the WORK_DIR in the
environment of any process still running) gets SIGTERM, the grace period, then SIGKILL, and
the job ends FAILED with reason "job service restarted"; its scheduler dispatches it again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from tendril.bridge.core import WORK_SUBDIRS, BridgeJob, ProgressSink
from tendril.bridge.server import MAX_SOCKET_PATH_BYTES
from tendril.core import metrics, tracing
from tendril.core.config import ExecutorConfig, WorkerConfig, split_address
from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout, Overflow, SubscriptionOverflow
from tendril.core.logs import get_logger
from tendril.core.process import child_env
from tendril.job.argv import render_argv
from tendril.job.errors import JobError, JobReason
from tendril.job.executor import ExecutorProcess, kill_stale_group, processes_with_env, same_process
from tendril.job.joblog import LogReader
from tendril.job.model import JobRecord, JobState, validate_job_id
from tendril.job.store import JobStore

log = get_logger("tendril.jobs")

JOB_JSON = "job.json"
SOCKET_NAME = "bridge.sock"
LOG_NAME = "executor.log"
TOKEN_ENV = "TENDRIL_BRIDGE_TOKEN"
RESTART_REASON = "job service restarted"
# A graceful stop of the JobService must end within 10 s (issue 3), jobs included: SIGTERM
# grace, then SIGKILL, bridge and server shutdown must all fit.
SHUTDOWN_GRACE_CAP_SECONDS = 5.0
FOLLOW_POLL_SECONDS = 0.2
WATCH_QUEUE = 1000
LIST_LIMIT_MAX = 1000
ENDED_LEASES_KEPT = 1024


@dataclasses.dataclass(frozen=True)
class LeaseInfo:
    """What the JobService needs to know about a lease."""

    lease_id: str
    owner_id: str
    renewable: bool
    expires_at: float


class LeaseDirectory(Protocol):
    """Looks leases up (the LeaseService, in production)."""

    async def get(self, lease_id: str) -> LeaseInfo | None:
        """The live lease, or None when there is none with that id."""
        ...


class BridgeHandle(Protocol):
    """A started job bridge."""

    async def stop(self) -> None: ...


BridgeStarter = Callable[[BridgeJob, str, ProgressSink], Awaitable[BridgeHandle]]


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


@dataclasses.dataclass(eq=False)
class _Run:
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


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the executor was killed by {name}"
    return f"the executor exited with code {code}"


def _force_remove(func: Callable[..., Any], path: str, _exc: Any) -> None:
    """rmtree helper: an executor may leave read-only directories behind; make them writable."""
    parent = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
    with contextlib.suppress(FileNotFoundError):
        func(path)


class JobManager:
    """Every job of this worker: dispatch, supervision, records, watch and logs."""

    def __init__(
        self,
        config: WorkerConfig,
        store: JobStore,
        leases: LeaseDirectory,
        start_bridge: BridgeStarter,
        *,
        python: str = sys.executable,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.leases = leases
        self.start_bridge = start_bridge
        self.python = python
        self.clock = clock
        self.work_root = config.work_dir
        self.logs_dir = config.state_dir / "logs"
        self.events: Fanout[JobRecord] = Fanout()
        self._runs: dict[str, _Run] = {}
        self._claimed: set[str] = set()  # job ids whose dispatch is in progress
        self._ended_leases: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- paths ---------------------------------------------------------------------------

    def work_dir_of(self, job_id: str) -> Path:
        return self.work_root / f"job-{job_id}"

    def saved_log_of(self, job_id: str) -> Path:
        return self.logs_dir / f"job-{job_id}.log"

    # -- dispatch ------------------------------------------------------------------------

    def _validate(self, caller: str, spec: DispatchSpec) -> ExecutorConfig:
        if self._stopping:
            raise JobError(
                ErrorKind.UNAVAILABLE,
                "the JobService is stopping; dispatch to another worker or retry once it is back",
                reason=JobReason.SHUTTING_DOWN,
            )
        if not caller:
            raise JobError(
                ErrorKind.UNAUTHENTICATED,
                "the caller did not say who it is; send metadata 'tendril-peer-id' with your scheduler id",
                reason=JobReason.NO_PEER_ID,
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
        executor = self.config.executor(spec.executor_class, spec.executor_name)
        if executor is None:
            known = ", ".join(f"{e.executor_class}/{e.name}" for e in self.config.executors) or "none"
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"executor {spec.executor_class}/{spec.executor_name} is not configured on this worker "
                f"(configured: {known})",
                reason=JobReason.EXECUTOR_NOT_CONFIGURED,
                metadata={"executor_class": spec.executor_class, "name": spec.executor_name},
            )
        socket_path = self.work_dir_of(spec.job_id) / SOCKET_NAME
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"the bridge socket path {socket_path} is longer than the {MAX_SOCKET_PATH_BYTES} bytes a Unix "
                "socket allows; use a shorter job id or set worker.work_dir to a shorter directory",
                reason=JobReason.SOCKET_PATH_TOO_LONG,
            )
        return executor

    async def _check_lease(self, caller: str, lease_id: str) -> None:
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

    async def dispatch(self, caller: str, spec: DispatchSpec) -> JobRecord:
        """Start a job; on any failure nothing of it is left (no dir, record, process, socket)."""
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
            await self._check_lease(caller, spec.lease_id)
            run = await self._launch(caller, spec, executor)
        finally:
            self._claimed.discard(spec.job_id)
        self._runs[spec.job_id] = run
        metrics.JOBS_ACTIVE.set(len(self._runs))
        run.task = asyncio.create_task(self._supervise(run), name=f"job-{spec.job_id}")
        log.info("job.started", job_id=spec.job_id, lease_id=spec.lease_id, peer=caller, pid=run.process.pid)
        self.events.publish(run.record.copy())
        if spec.lease_id in self._ended_leases:
            self._in_background(self._stop(run, JobState.CANCELLED, f"lease {spec.lease_id} ended"))
        return run.record.copy()

    def _executor_env(self, executor: ExecutorConfig, paths: dict[str, str], token: str) -> dict[str, str]:
        env = child_env(executor.env)
        env.update({k: paths[k] for k in ("SOCKET_PATH", "WORK_DIR", "JOB_JSON")})
        env[TOKEN_ENV] = token
        # NOTE: the "aggregate" executor serves its run on this worker's own parameter server.
        env["TENDRIL_PARAMSERVER_ADDRESS"] = self.config.listen("paramserver")
        env.pop(metrics.MULTIPROC_DIR_ENV, None)  # executors never write into the worker's metrics
        tracing.pass_context(env)  # TRACEPARENT: the executor's bridge calls join the Dispatch trace
        return env

    def _write_job_json(self, path: Path, record: JobRecord, socket_path: Path) -> None:
        document = {
            "job_id": record.job_id,
            "worker_id": self.config.worker_id,
            "lease_id": record.lease_id,
            "owner_id": record.owner_id,
            "executor": {"class": record.executor_class, "name": record.executor_name},
            "config": record.config,
            "work_dir": record.work_dir,
            "socket_path": str(socket_path),
            "coordinator_address": record.coordinator_address,
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=2)

    async def _launch(self, caller: str, spec: DispatchSpec, executor: ExecutorConfig) -> _Run:
        work_dir = self.work_dir_of(spec.job_id)
        paths = {
            "SOCKET_PATH": str(work_dir / SOCKET_NAME),
            "WORK_DIR": str(work_dir),
            "JOB_JSON": str(work_dir / JOB_JSON),
            "PYTHON": self.python,
        }
        argv = render_argv(executor.command, paths)  # a bad template fails before anything exists
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
            self.work_root.mkdir(parents=True, exist_ok=True)
            work_dir.mkdir(mode=0o700)
            created_dir = True
            os.chmod(work_dir, 0o700)  # mkdir's mode is filtered by the umask
            for sub in WORK_SUBDIRS:
                (work_dir / sub).mkdir(mode=0o700)
            self._write_job_json(work_dir / JOB_JSON, record, work_dir / SOCKET_NAME)
            token = secrets.token_urlsafe(32)
            bridge_job = BridgeJob(
                job_id=record.job_id,
                worker_id=self.config.worker_id,
                lease_id=record.lease_id,
                owner_id=caller,
                executor_class=record.executor_class,
                executor_name=record.executor_name,
                config=record.config,
                work_dir=work_dir,
                socket_path=work_dir / SOCKET_NAME,
                coordinator_address=record.coordinator_address,
            )
            bridge = await self.start_bridge(bridge_job, token, self.report_progress)
            process = ExecutorProcess.spawn(
                argv, env=self._executor_env(executor, paths, token), cwd=work_dir, log_path=work_dir / LOG_NAME
            )
            metrics.EXECUTORS_STARTED.inc()
            record = self.store.transition(
                record,
                JobState.RUNNING,
                started_at=self.clock(),
                pid=process.pid,
                pid_create_time=process.create_time,
            )
        except BaseException:
            undo = self._undo_launch(spec.job_id, work_dir if created_dir else None, bridge, process)
            await asyncio.shield(asyncio.ensure_future(undo))
            raise
        return _Run(record=record, process=process, bridge=bridge)

    async def _undo_launch(
        self, job_id: str, work_dir: Path | None, bridge: BridgeHandle | None, process: ExecutorProcess | None
    ) -> None:
        if process is not None:
            await process.terminate(0.0)
            process.reap()
        if bridge is not None:
            try:
                await bridge.stop()
            except Exception as exc:
                log.warning("job.bridge_stop_failed", job_id=job_id, error=repr(exc))
        if work_dir is not None:
            shutil.rmtree(work_dir, onerror=_force_remove)
        self.store.delete_pending(job_id)

    # -- supervision ---------------------------------------------------------------------

    async def _supervise(self, run: _Run) -> None:
        state, reason, code = JobState.FAILED, "the JobService lost track of the executor", None
        try:
            timeout = run.record.timeout_seconds or None
            waits = [asyncio.create_task(run.process.wait_exited()), asyncio.create_task(run.stop_event.wait())]
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            if not run.process.exited:
                if run.stop_request is None:
                    run.stop_request = (
                        JobState.FAILED,
                        f"timed out after {timeout:g} s; the executor was stopped (SIGTERM, then SIGKILL)",
                    )
                    run.grace = self.config.job.kill_grace_seconds
                await run.process.terminate(run.grace)
            code = run.process.reap()
            if run.stop_request is not None:
                state, reason = run.stop_request
            elif code == 0:
                state, reason = JobState.SUCCEEDED, describe_exit(code)
            else:
                state, reason = JobState.FAILED, describe_exit(code)
        finally:
            await self._finish(run, state, reason, code)

    async def _finish(self, run: _Run, state: JobState, reason: str, code: int | None) -> None:
        job_id = run.record.job_id
        try:
            try:
                await run.bridge.stop()
            except Exception as exc:
                log.warning("job.bridge_stop_failed", job_id=job_id, error=repr(exc))
            self._save_log(job_id, Path(run.record.work_dir))
            self._clean_work_dir(Path(run.record.work_dir))
            record = self.store.transition(
                run.record,
                state,
                exit_code=code,
                reason=reason,
                finished_at=self.clock(),
                progress=dict(run.progress),
            )
        except Exception as exc:
            log.error("job.finish_failed", job_id=job_id, error=repr(exc))
            record = self.store.get(job_id) or run.record
        finally:
            self._runs.pop(job_id, None)
            metrics.JOBS_ACTIVE.set(len(self._runs))
            run.done.set()
        metrics.JOBS_COMPLETED.labels(state=record.state.value.lower()).inc()
        log.info("job.ended", job_id=job_id, state=record.state.value, reason=record.reason, exit_code=code)
        self.events.publish(record)

    def _save_log(self, job_id: str, work_dir: Path) -> None:
        source = work_dir / LOG_NAME
        if not source.is_file():
            return
        target = self.saved_log_of(job_id)
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("job.log_save_failed", job_id=job_id, error=repr(exc))

    def _clean_work_dir(self, work_dir: Path) -> None:
        if self.config.job.keep_work_dirs:
            with contextlib.suppress(FileNotFoundError):
                (work_dir / SOCKET_NAME).unlink()
            return
        if work_dir.exists():
            shutil.rmtree(work_dir, onerror=_force_remove)

    async def _stop(self, run: _Run, state: JobState, reason: str, grace: float | None = None) -> None:
        """Ask ``run`` to end as ``state`` (SIGTERM, grace, SIGKILL) and wait until it is cleaned up."""
        if run.stop_request is None:
            run.stop_request = (state, reason)
            run.grace = self.config.job.kill_grace_seconds if grace is None else grace
            run.stop_event.set()
        await run.done.wait()

    def _in_background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- queries -------------------------------------------------------------------------

    def _live(self, record: JobRecord) -> JobRecord:
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
        return [self._live(r) for r in self.store.list(states, count)]

    async def watch(self, job_id: str = "") -> AsyncIterator[JobRecord]:
        """One job (its state now, then each change until it ends) or every job (live ones, then changes)."""
        sub = self.events.subscribe(
            maxsize=WATCH_QUEUE,
            overflow=Overflow.CLOSE,
            name=job_id or "all",
            accepts=(lambda r: r.job_id == job_id) if job_id else None,
        )
        try:
            if job_id:
                record = self.get(job_id)
                yield record
                if record.terminal:
                    return
            else:
                for run in list(self._runs.values()):
                    yield self._live(run.record.copy())
            async for record in sub:
                yield record
                if job_id and record.terminal:
                    return
        except SubscriptionOverflow as exc:
            raise JobError(
                ErrorKind.ABORTED,
                f"this watch fell {WATCH_QUEUE} changes behind and was cut off; start a new Watch",
                reason=JobReason.WATCH_OVERFLOW,
            ) from exc
        finally:
            self.events.unsubscribe(sub)

    def _open_log(self, job_id: str, work_dir: str) -> BinaryIO | None:
        for path in (Path(work_dir) / LOG_NAME, self.saved_log_of(job_id)):
            with contextlib.suppress(FileNotFoundError):
                return open(path, "rb")
        return None

    async def logs(self, job_id: str, tail_lines: int = 0, follow: bool = False) -> AsyncIterator[str]:
        """The executor's output: the last ``tail_lines`` lines (0: all), then new output while following."""
        record = self.get(job_id)
        f = self._open_log(job_id, record.work_dir)
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

    async def _kill_leftovers(self, work_dir: Path, pid: int | None, create_time: float | None) -> None:
        groups: set[int] = set()
        if pid and same_process(pid, create_time):
            groups.add(pid)  # executors lead their own session: pgid == pid
        for proc in processes_with_env("WORK_DIR", str(work_dir)):
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(proc.pid))
        groups.discard(os.getpgid(0))
        grace = self.config.job.kill_grace_seconds
        await asyncio.gather(*(kill_stale_group(g, grace) for g in groups))

    async def reconcile(self) -> None:
        """After a restart: end jobs left PENDING/RUNNING, kill their processes, sweep stray work dirs."""
        leftovers = self.store.list([JobState.PENDING, JobState.RUNNING], limit=1_000_000)
        await asyncio.gather(*(self._kill_leftovers(Path(r.work_dir), r.pid, r.pid_create_time) for r in leftovers))
        for record in leftovers:
            self._save_log(record.job_id, Path(record.work_dir))
            self._clean_work_dir(Path(record.work_dir))
            self.store.transition(record, JobState.FAILED, reason=RESTART_REASON, finished_at=self.clock())
            log.warning("job.reconciled", job_id=record.job_id, was=record.state.value, pid=record.pid)
        if not self.work_root.is_dir():
            return
        for path in self.work_root.glob("job-*"):
            record = self.store.get(path.name[len("job-") :])
            if record is None or not self.config.job.keep_work_dirs:
                await self._kill_leftovers(path, None, None)
                shutil.rmtree(path, onerror=_force_remove)
                log.warning("job.stray_work_dir_removed", path=str(path))

    async def shutdown(self) -> None:
        """Refuse new jobs, cancel every running one (bounded grace), end every watch."""
        self._stopping = True
        grace = min(self.config.job.kill_grace_seconds, SHUTDOWN_GRACE_CAP_SECONDS)
        runs = list(self._runs.values())
        await asyncio.gather(*(self._stop(r, JobState.CANCELLED, "the JobService is stopping", grace) for r in runs))
        for task in list(self._background):
            task.cancel()
        self.events.close_all()
