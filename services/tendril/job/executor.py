"""Executor processes: environment, spawn in their own process group, wait, stop, sweep (no gRPC here).

Each executor is the leader of a new session (``start_new_session=True``), so its process
group id is its pid and every child it starts shares that group. Ending a job signals the
whole group. Exit is observed through a pidfd, which becomes readable when the leader exits
but does not reap it: while the leader is a zombie its group id cannot be reused, so the final
SIGKILL sweep of the group can never hit an unrelated process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from tendril.bridge.auth import TOKEN_ENV
from tendril.core import metrics, tracing
from tendril.core.config import ExecutorConfig
from tendril.core.errors import ErrorKind
from tendril.core.process import child_env
from tendril.job.errors import JobError, JobReason


def executor_env(executor: ExecutorConfig, paths: Mapping[str, str], token: str) -> dict[str, str]:
    """The environment of an executor: the worker's, its config's ``env``, its paths and bridge token."""
    env = child_env(executor.env)
    env.update({k: paths[k] for k in ("SOCKET_PATH", "WORK_DIR", "JOB_JSON")})
    env[TOKEN_ENV] = token
    env.pop(metrics.MULTIPROC_DIR_ENV, None)  # executors never write into the worker's metrics
    tracing.pass_context(env)  # TRACEPARENT: the executor's bridge calls join the Dispatch trace
    return env


def describe_exit(code: int) -> str:
    """An exit code in words (negative: the signal that killed the process)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the executor was killed by {name}"
    return f"the executor exited with code {code}"


class ExecutorProcess:
    """One running executor (the leader of its own process group)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        try:
            self.create_time = psutil.Process(self.pid).create_time()
        except psutil.Error:
            self.create_time = time.time()
        self._exited = asyncio.Event()
        self._pidfd = os.pidfd_open(self.pid)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._pidfd, self._on_exit)

    @classmethod
    def spawn(cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> ExecutorProcess:
        """Start ``argv`` (no shell) with stdout and stderr appended to ``log_path``."""
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"cannot start the executor command {argv[0]!r}: {exc.strerror or exc}; "
                "check the command of this executor in the worker's [[executors]] config",
                reason=JobReason.EXECUTOR_START_FAILED,
                metadata={"command": str(argv[0])},
            ) from exc
        finally:
            os.close(fd)
        return cls(popen)

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._exited.set()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    async def wait_exited(self) -> None:
        """Until the leader has exited (it stays a zombie until :meth:`reap`)."""
        await self._exited.wait()

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def terminate(self, grace: float) -> None:
        """SIGTERM to the group, up to ``grace`` seconds to exit, then SIGKILL."""
        if not self.exited:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_exited(), timeout=max(grace, 0.0))
        if not self.exited:
            self.signal_group(signal.SIGKILL)
            await self.wait_exited()

    def reap(self) -> int:
        """Kill whatever is left in the group, reap the leader and return its exit code.

        The code is negative when a signal killed the leader (``-9`` for SIGKILL).
        """
        if not self.exited:
            raise RuntimeError("reap() before the executor exited")
        # NOTE: the leader is a zombie here, so its pgid is still reserved: the sweep reaches
        # only leftovers of this job (a child the executor did not wait for), never a stranger.
        self.signal_group(signal.SIGKILL)
        return self.popen.wait()


# -- processes left by an earlier JobService (restart reconciliation) -----------------------


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def processes_with_env(key: str, value: str) -> list[psutil.Process]:
    """Live processes of this user whose environment has ``key=value`` (how executors are marked)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(key) == value:
                found.append(proc)
    return found


def same_process(pid: int, create_time: float | None) -> bool:
    """True when ``pid`` is alive and is the process started at ``create_time`` (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.5
    except psutil.Error:
        return False


async def kill_stale_group(pgid: int, grace: float, *, poll: float = 0.05) -> None:
    """SIGTERM, ``grace`` seconds, then SIGKILL for every process still in group ``pgid``.

    For processes that are not our children (their parent died): returns when none is left.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not _group_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_members(pgid):
                return
            await asyncio.sleep(poll)
