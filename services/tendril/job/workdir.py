"""A job's files: its work dir and its saved log (no gRPC here).

Work dir ``<work_dir>/job-<id>/`` (0700): ``job.json``, ``bridge.sock``, ``executor.log``,
``artifacts/``, ``data/``, ``updates/``, ``params/``, ``results/`` (kept when the job ends:
:mod:`.results`). The executor runs with the work dir as
its current directory.

NOTE: when a job ends its ``executor.log`` is copied to ``<state_dir>/logs/job-<id>.log``
before the work dir is removed, so ``Logs`` keeps working for ended jobs (whether or not
``job.keep_work_dirs`` is set).

NOTE: the clean-up keeps the job's ``results/`` first (:class:`ResultsStore`: moved, or copied
under ``job.keep_work_dirs``, to ``<state_dir>/results/job-<id>/`` with its manifest).

NOTE (handoff/): a job of a plain executor is also offered ``handoff/``, a link to its own
folder (0700) on a file system held in memory, ``<job.handoff_dir>/tendril-<worker id>-<tag>/
job-<id>/`` (the tag: 8 hex digits of the work root's path), for the model-sized files it hands
to its bridge every round (:mod:`tendril_sdk.files`). That folder is removed with the work dir,
found by the job's id, never through the link (which the executor could point elsewhere); one
left by a worker that died is swept at the next start (:meth:`WorkDirs.sweep_handoffs`), and the
folder above goes with its last job. No offer (a container executor, whose mounts hold the work
dir only; ``job.handoff_dir`` empty, missing or not in memory; a folder there not this user's
own) costs nothing: the executor uses ``updates/``.

NOTE (failed clean-ups): the clean-up of an ended job (save the log, remove the work dir) can
fail — a full disk, a file the executor made undeletable. The job's end is recorded before it,
so a failure never keeps a job running: it is logged, counted
(``tendril_job_cleanup_failures_total``) and kept in a backlog that :meth:`WorkDirs.retry`
works off (after every job end and on a timer); the work dir (and its log) stays meanwhile.
The backlog lives in memory: after a restart, reconciliation finds the leftover dir instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.server import MAX_SOCKET_PATH_BYTES
from tendril.core import metrics
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.job.errors import JobError, JobReason
from tendril.job.model import JobRecord
from tendril.job.results import RESULTS_DIR, ResultsStore
from tendril_sdk.files import HANDOFF, memory_backed
from tendril_sdk.job import ExecutorRef, JobDescriptor

log = get_logger("tendril.jobs")

JOB_JSON = "job.json"
SOCKET_NAME = "bridge.sock"
LOG_NAME = "executor.log"
DIR_PREFIX = "job-"


def _force_remove(func: Callable[..., Any], path: str, _exc: Any) -> None:
    """rmtree helper: an executor may leave read-only directories behind; make them writable."""
    parent = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
    with contextlib.suppress(FileNotFoundError):
        func(path)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it; a missing ``path`` is fine, other failures raise OSError."""
    if path.exists():
        shutil.rmtree(path, onerror=_force_remove)


def _remove_memory_tree(path: Path) -> None:
    """Remove a job's handoff folder (its own: files in memory, no log or results to keep first)."""
    if os.path.lexists(path):
        shutil.rmtree(path, onerror=_force_remove)


class WorkDirs:
    """The work dirs under ``work_root`` and the saved logs in ``logs_dir``."""

    def __init__(
        self,
        work_root: Path,
        logs_dir: Path,
        *,
        worker_id: str,
        keep: bool,
        results: ResultsStore | None = None,
        handoff_dir: Path | None = None,
    ) -> None:
        self.work_root = work_root
        self.logs_dir = logs_dir
        self.results = results or ResultsStore(logs_dir.parent / RESULTS_DIR)
        self.worker_id = worker_id
        self.keep = keep
        self._backlog: dict[str, Path] = {}  # job id -> work dir whose clean-up failed
        # The folder holding the jobs' handoff/ folders; None: no job is offered one.
        self.handoff_root: Path | None = None
        if handoff_dir is not None and str(handoff_dir):
            if os.path.isdir(handoff_dir) and memory_backed(handoff_dir):
                # (two workers of one id on a machine, each with its work root, keep apart)
                tag = hashlib.sha256(os.fsencode(os.path.abspath(work_root))).hexdigest()[:8]
                self.handoff_root = handoff_dir / f"tendril-{worker_id}-{tag}"
            else:
                log.info(
                    "job.handoff_off",
                    handoff_dir=str(handoff_dir),
                    why="not a folder on a file system held in memory; hand-off files go to each work dir's updates/",
                )

    # -- paths ---------------------------------------------------------------------------

    def path_of(self, job_id: str) -> Path:
        return self.work_root / f"{DIR_PREFIX}{job_id}"

    def saved_log_of(self, job_id: str) -> Path:
        return self.logs_dir / f"{DIR_PREFIX}{job_id}.log"

    def placeholders(self, job_id: str) -> dict[str, str]:
        """The paths an executor's command and environment name: SOCKET_PATH, WORK_DIR, JOB_JSON."""
        work_dir = self.path_of(job_id)
        return {
            "SOCKET_PATH": str(work_dir / SOCKET_NAME),
            "WORK_DIR": str(work_dir),
            "JOB_JSON": str(work_dir / JOB_JSON),
        }

    def check_socket_path(self, job_id: str) -> None:
        """Raise JobError unless the job's bridge socket path fits a Unix socket."""
        socket_path = self.path_of(job_id) / SOCKET_NAME
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"the bridge socket path {socket_path} is longer than the {MAX_SOCKET_PATH_BYTES} bytes a Unix "
                "socket allows; use a shorter job id or set worker.work_dir to a shorter directory",
                reason=JobReason.SOCKET_PATH_TOO_LONG,
            )

    def leftovers(self) -> Iterator[tuple[str, Path]]:
        """(job id, dir) of every work dir present now."""
        if self.work_root.is_dir():
            for path in self.work_root.glob(f"{DIR_PREFIX}*"):
                yield path.name[len(DIR_PREFIX) :], path

    # -- a job's start -------------------------------------------------------------------

    def descriptor(self, record: JobRecord) -> JobDescriptor:
        """The job as its executor (job.json) and its bridge see it.

        NOTE: the one place a job record becomes a descriptor; job.json is written from it and
        the bridge is given the same object, so they cannot disagree.
        """
        work_dir = Path(record.work_dir)
        return JobDescriptor(
            job_id=record.job_id,
            worker_id=self.worker_id,
            lease_id=record.lease_id,
            owner_id=record.owner_id,
            executor=ExecutorRef(record.executor_class, record.executor_name),
            config=dict(record.config),
            work_dir=work_dir,
            socket_path=work_dir / SOCKET_NAME,
            coordinator_address=record.coordinator_address,
        )

    def create(self, job: JobDescriptor, *, handoff: bool = True) -> Path:
        """Make the job's work dir (0700) with its subdirs and job.json, and (``handoff``, where
        this worker offers it) its handoff/ folder; on failure nothing is left."""
        work_dir = job.work_dir
        self.work_root.mkdir(parents=True, exist_ok=True)
        work_dir.mkdir(mode=0o700)
        try:
            os.chmod(work_dir, 0o700)  # mkdir's mode is filtered by the umask
            for sub in (*WORK_SUBDIRS, RESULTS_DIR):
                (work_dir / sub).mkdir(mode=0o700)
            self._write_job_json(job)
            if handoff:
                self._offer_handoff(work_dir)
        except BaseException:
            self._remove(work_dir)
            raise
        return work_dir

    # -- handoff/ --------------------------------------------------------------------------

    def _own_handoff_root(self) -> Path | None:
        """The handoff root, made if missing; None when it is not a folder of this user's only."""
        root = self.handoff_root
        if root is None:
            return None
        with contextlib.suppress(FileExistsError):
            root.mkdir(mode=0o700)
        info = os.lstat(root)
        # NOTE: a shared /dev/shm lets anyone make a folder (or link) of that name first.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            log.warning(
                "job.handoff_off",
                handoff_dir=str(root),
                why="it is not a folder owned by this user and closed to others; hand-off files go to updates/",
            )
            self.handoff_root = None
            return None
        return root

    def handoff_of(self, work_dir: Path) -> Path | None:
        """The memory folder of the job in ``work_dir`` (whether it exists or not); None without an offer."""
        return None if self.handoff_root is None else self.handoff_root / work_dir.name

    def _offer_handoff(self, work_dir: Path) -> None:
        """Make the job's folder held in memory and link it as handoff/; a failure only means no offer."""
        try:
            root = self._own_handoff_root()
            if root is None:
                return
            target = root / work_dir.name
            _remove_memory_tree(target)  # (one left by an earlier job of that id)
            target.mkdir(mode=0o700)
            os.symlink(target, work_dir / HANDOFF, target_is_directory=True)
        except OSError as exc:
            log.warning(
                "job.handoff_failed", work_dir=str(work_dir), error=repr(exc), hint="hand-off files go to updates/"
            )
            with contextlib.suppress(OSError):
                self._drop_handoff(work_dir)

    def _drop_handoff(self, work_dir: Path) -> None:
        """Remove the job's memory folder (found by the job's id, not through the link) and the link."""
        target = self.handoff_of(work_dir)
        if target is not None:
            _remove_memory_tree(target)
            with contextlib.suppress(OSError):  # (only once empty: other jobs' folders stay)
                target.parent.rmdir()
        link = work_dir / HANDOFF
        if link.is_symlink():
            link.unlink()

    def _remove(self, work_dir: Path) -> None:
        self._drop_handoff(work_dir)
        remove_tree(work_dir)

    def sweep_handoffs(self) -> int:
        """Remove the memory folders whose work dir is gone (a worker that died left them); how many."""
        root = self.handoff_root
        if root is None or not root.is_dir() or root.is_symlink():
            return 0
        swept = 0
        for folder in root.glob(f"{DIR_PREFIX}*"):
            if not (self.work_root / folder.name).exists():
                try:
                    _remove_memory_tree(folder)
                    swept += 1
                except OSError as exc:
                    log.warning("job.handoff_sweep_failed", path=str(folder), error=repr(exc))
        with contextlib.suppress(OSError):
            root.rmdir()  # (when no job's folder is left)
        return swept

    @staticmethod
    def _write_job_json(job: JobDescriptor) -> None:
        fd = os.open(job.work_dir / JOB_JSON, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(job.to_dict(), f, indent=2)

    def discard(self, work_dir: Path) -> None:
        """Remove the dir of a job that never started (its dispatch failed); raises OSError."""
        self._remove(work_dir)

    # -- logs ----------------------------------------------------------------------------

    def open_log(self, job_id: str, work_dir: str) -> BinaryIO | None:
        """The executor's log: in the work dir while it exists, else the saved copy; None when neither is."""
        for path in (Path(work_dir) / LOG_NAME, self.saved_log_of(job_id)):
            with contextlib.suppress(FileNotFoundError):
                return open(path, "rb")
        return None

    def _save_log(self, job_id: str, work_dir: Path) -> None:
        source = work_dir / LOG_NAME
        if not source.is_file():
            return
        target = self.saved_log_of(job_id)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)

    # -- a job's end ---------------------------------------------------------------------

    def clean_up(self, job_id: str, work_dir: Path) -> bool:
        """Save the log, then remove the work dir (only its socket with ``job.keep_work_dirs``).

        Never raises: a failure is logged, counted and queued for :meth:`retry`; returns
        whether the clean-up is done.
        """
        try:
            # NOTE: results that cannot be kept keep their work dir, as a log that cannot be saved.
            self.results.keep(job_id, work_dir / RESULTS_DIR, copy=self.keep)
            # NOTE: a log that cannot be saved keeps its work dir: removing it would lose the log.
            self._save_log(job_id, work_dir)
            if self.keep:
                with contextlib.suppress(FileNotFoundError):
                    (work_dir / SOCKET_NAME).unlink()
                self._drop_handoff(work_dir)  # (memory, not disk: what it held is gone with the job)
            else:
                self._remove(work_dir)
        except Exception as exc:
            again = job_id in self._backlog
            self._backlog[job_id] = work_dir
            metrics.JOB_CLEANUP_FAILURES.inc()
            (log.warning if again else log.error)(
                "job.cleanup_failed",
                job_id=job_id,
                work_dir=str(work_dir),
                error=repr(exc),
                retry=again,
                hint="the job has ended; its work dir stays until a later attempt removes it",
            )
            return False
        if self._backlog.pop(job_id, None) is not None:
            log.info("job.cleanup_retried", job_id=job_id, work_dir=str(work_dir))
        return True

    @property
    def backlog(self) -> dict[str, Path]:
        """Clean-ups that failed and wait for :meth:`retry` (job id -> work dir)."""
        return dict(self._backlog)

    def retry(self) -> int:
        """Try every failed clean-up again; returns how many still fail."""
        for job_id, work_dir in list(self._backlog.items()):
            self.clean_up(job_id, work_dir)
        return len(self._backlog)

    async def retry_forever(self, interval: float) -> None:
        """:meth:`retry` every ``interval`` seconds while there is a backlog (until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            if self._backlog:
                self.retry()
