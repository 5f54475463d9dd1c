"""Executor processes: environment, start through a shim, wait, stop, sweep (no gRPC here).

Every executor runs under its own shim (:mod:`tendril.job.shim`): JobService starts the shim
in a session of its own and hands it the executor's command, environment and log file on
stdin; the shim starts the executor as its child (a session of its own too, so its process
group id is its pid and its children share that group), forwards stop signals to that group,
and records the exit code in the work dir (``exit.json``) when the executor ends. JobService
watches the shim through a pidfd, which becomes readable when the shim exits whether or not
JobService is its parent — so a restarted JobService follows the shims of the one before it
(:meth:`ExecutorProcess.adopt`) exactly as it follows its own.

Stopping is SIGTERM to the shim (forwarded to the group), the grace period, then the shim's
:data:`~tendril.job.shim.KILL_SIGNAL` (it sends the group SIGKILL). Signals go through the
pidfd (``pidfd_send_signal``), so they can never reach a process that reused the shim's pid.
A shim that is gone without an exit record (killed by someone) leaves its executor orphaned:
its process group and every process with its ``WORK_DIR`` are then stopped here
(:func:`kill_leftovers`), and its clean-up commands run (a container executor's container is
removed: :mod:`tendril.job.container`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from tendril.bridge.auth import TOKEN_ENV
from tendril.core import metrics, tracing
from tendril.core.config import ExecutorConfig
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.core.process import child_env
from tendril.job.errors import JobError, JobReason
from tendril.job.shim import CLEANUP_TIMEOUT_SECONDS, KILL_SIGNAL, NOTHING_TO_CLEAN, read_exit
from tendril_sdk.job import RESULTS_DIR, RESULTS_DIR_ENV

log = get_logger("tendril.jobs")

SHIM_MODULE = "tendril.job.shim"
# A shim is a small Python process; on a loaded host its start can take seconds.
SHIM_START_SECONDS = 30.0
# After the kill request the shim has this long to reap the executor and exit.
SHIM_KILL_WAIT_SECONDS = 5.0
# NOTE: a shim with clean-up commands (a container to remove) runs them before it exits: a
# runtime's `rm` takes a second or two on a loaded host.
SHIM_CLEANUP_WAIT_SECONDS = 10.0

Cleanup = Sequence[Sequence[str]]


def executor_env(executor: ExecutorConfig, paths: Mapping[str, str], token: str) -> dict[str, str]:
    """The environment of an executor: the worker's, its config's ``env``, its paths and bridge token."""
    env = child_env(executor.env)
    env.update({k: paths[k] for k in ("SOCKET_PATH", "WORK_DIR", "JOB_JSON")})
    env[TOKEN_ENV] = token
    env[RESULTS_DIR_ENV] = RESULTS_DIR  # relative to WORK_DIR, the executor's current directory
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


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _start_failed(argv0: str, why: str) -> JobError:
    return JobError(
        ErrorKind.FAILED_PRECONDITION,
        f"cannot start the executor command {argv0!r}: {why}; "
        "check the command of this executor in the worker's [[executors]] config",
        reason=JobReason.EXECUTOR_START_FAILED,
        metadata={"command": argv0},
    )


def _start_shim(argv: list[str], cwd: Path, orders: bytes, started: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """Start a shim, give it its orders and read its first answer (blocking: run in a thread).

    The shim's Popen is appended to ``started`` as soon as it exists, so that the caller can
    kill it if the answer does not come.
    """
    env = child_env()
    env.pop(metrics.MULTIPROC_DIR_ENV, None)
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    started.append(popen)
    assert popen.stdin is not None and popen.stdout is not None
    with contextlib.suppress(BrokenPipeError):
        popen.stdin.write(orders)
    with contextlib.suppress(BrokenPipeError):
        popen.stdin.close()
    line = popen.stdout.readline()
    try:
        answer = json.loads(line) if line else {}
    except ValueError:
        answer = {}
    return answer if isinstance(answer, dict) else {}


class ExecutorProcess:
    """One running executor, followed through its shim."""

    def __init__(
        self,
        work_dir: Path,
        *,
        shim_pid: int,
        shim_create_time: float,
        pid: int,
        create_time: float | None,
        pidfd: int,
        popen: subprocess.Popen[bytes] | None = None,
        cleanup: Cleanup = (),
    ) -> None:
        self.work_dir = work_dir
        self.cleanup = [list(argv) for argv in cleanup]  # what the shim runs after the executor (see shim.py)
        self.shim_pid = shim_pid
        self.shim_create_time = shim_create_time
        self.pid = pid
        self.create_time = create_time
        self.popen = popen  # set when this JobService started the shim (it is our child)
        self.shim_status: int | None = None  # the shim's own exit status, when we are its parent
        self._pidfd: int | None = pidfd
        self._exited = asyncio.Event()
        asyncio.get_running_loop().add_reader(pidfd, self._on_exit)

    # -- start and re-adoption -----------------------------------------------------------

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        python: str = sys.executable,
        cleanup: Cleanup = (),
    ) -> ExecutorProcess:
        """Start ``argv`` (no shell) under a shim, in ``cwd``, output appended to ``log_path``.

        ``cleanup``: commands the shim runs once the executor is gone (and :meth:`collect` runs
        when the shim could not).
        """
        started: list[subprocess.Popen[bytes]] = []
        cleanup = [list(c) for c in cleanup]
        orders = json.dumps({"argv": list(argv), "env": dict(env), "log": str(log_path), "cleanup": cleanup}).encode()
        try:
            answer = await asyncio.wait_for(
                asyncio.to_thread(_start_shim, [python, "-m", SHIM_MODULE, str(cwd)], cwd, orders, started),
                SHIM_START_SECONDS,
            )
        except OSError as exc:
            raise _start_failed(python, f"the job's shim did not start: {exc.strerror or exc}") from exc
        except BaseException:
            # NOTE: a shim whose pid line was never read kills its executor itself once it
            # finds nobody reading; SIGKILL here, and the sweep, cover a shim that hangs.
            for popen in started:
                popen.kill()
                await asyncio.to_thread(popen.wait)
            await kill_leftovers(cwd, None, None, 0.0, cleanup)
            raise
        popen = started[0]
        if "pid" not in answer:
            code = await asyncio.to_thread(popen.wait)
            if popen.stdout is not None:
                popen.stdout.close()
            if "error" in answer:
                raise _start_failed(str(argv[0]), str(answer["error"]))
            raise _start_failed(str(argv[0]), f"the job's shim exited with code {code} before it started it")
        pidfd = os.pidfd_open(popen.pid)  # our child: not reaped yet, so this cannot fail
        shim_create_time = _create_time(popen.pid) or time.time()
        pid = int(answer["pid"])
        return cls(
            cwd,
            shim_pid=popen.pid,
            shim_create_time=shim_create_time,
            pid=pid,
            create_time=_create_time(pid),
            pidfd=pidfd,
            popen=popen,
            cleanup=cleanup,
        )

    @classmethod
    def adopt(
        cls,
        work_dir: Path,
        *,
        shim_pid: int,
        shim_create_time: float,
        pid: int,
        create_time: float | None,
        cleanup: Cleanup = (),
    ) -> ExecutorProcess | None:
        """Follow the shim an earlier JobService started; None when it is no longer running.

        The shim must be the same process (pid and start time) and run for this work dir.
        NOTE: the pidfd is opened before the check: if the check passes, the pidfd refers to
        the process checked, never to one that reused the pid afterwards.
        """
        try:
            pidfd = os.pidfd_open(shim_pid)
        except OSError:
            return None
        if not is_shim_of(shim_pid, shim_create_time, work_dir):
            os.close(pidfd)
            return None
        return cls(
            work_dir,
            shim_pid=shim_pid,
            shim_create_time=shim_create_time,
            pid=pid,
            create_time=create_time,
            pidfd=pidfd,
            cleanup=cleanup,
        )

    # -- the end -------------------------------------------------------------------------

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set()

    @property
    def exited(self) -> bool:
        """True once the shim has exited (the executor is gone, or orphaned if the shim was killed)."""
        return self._exited.is_set()

    async def wait_exited(self) -> None:
        await self._exited.wait()

    def _signal_shim(self, sig: int) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(self._pidfd, sig)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_exited(), timeout=max(seconds, 0.0))

    async def terminate(self, grace: float) -> None:
        """SIGTERM to the executor's group, up to ``grace`` seconds to exit, then SIGKILL."""
        if not self.exited:
            self._signal_shim(signal.SIGTERM)
            await self._wait(grace)
        if not self.exited:
            self._signal_shim(KILL_SIGNAL)
            await self._wait(SHIM_KILL_WAIT_SECONDS + (SHIM_CLEANUP_WAIT_SECONDS if self.cleanup else 0.0))
        if not self.exited:
            # The shim does not answer (stopped?): end it; collect() then stops its executor.
            log.warning("job.shim_unresponsive", shim_pid=self.shim_pid, pid=self.pid)
            self._signal_shim(signal.SIGKILL)
            await self.wait_exited()

    def _read_answer(self) -> int | None:
        """The exit code the shim said on its stdout (only its parent reads that)."""
        assert self.popen is not None and self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        os.set_blocking(fd, False)
        data = b""
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(fd, 65536):
                data += chunk
        self.popen.stdout.close()
        for line in data.splitlines():
            with contextlib.suppress(ValueError, TypeError):
                answer = json.loads(line)
                if isinstance(answer, dict) and isinstance(answer.get("exit_code"), int):
                    return int(answer["exit_code"])
        return None

    async def collect(self, grace: float) -> int | None:
        """After the shim exited: the executor's exit code, or None when it was not recorded.

        None means the shim was killed before the executor ended: the executor may still run,
        so its group and every process with its WORK_DIR are stopped (SIGTERM, ``grace``,
        SIGKILL) before this returns.
        """
        if not self.exited:
            raise RuntimeError("collect() before the shim exited")
        code: int | None = None
        if self.popen is not None:
            code = self._read_answer()
            self.shim_status = self.popen.wait()
        if code is None:
            code = read_exit(str(self.work_dir), self.pid)
        if code is None:
            await kill_leftovers(self.work_dir, self.pid, self.create_time, grace, self.cleanup)
        return code

    def lost_reason(self) -> str:
        """Why the exit code is unknown, for the job's reason."""
        status = self.shim_status
        if status is not None and status < 0:
            how = f"was killed by {_signal_name(status)}"
        elif status is not None:
            how = f"exited with code {status}"
        else:
            how = "ended"
        return (
            f"the executor's shim (pid {self.shim_pid}) {how} without recording the executor's exit; "
            "its processes were stopped"
        )


# -- processes left behind (a shim that was killed, a restart) -----------------------------


def is_shim_of(pid: int, create_time: float | None, work_dir: Path) -> bool:
    """True when ``pid`` is the live shim started at ``create_time`` for ``work_dir``."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    return same_process(pid, create_time) and SHIM_MODULE in cmdline and str(work_dir) in cmdline


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


async def run_cleanup(cleanup: Cleanup) -> None:
    """Run a job's clean-up commands (what its shim would have run), each bounded; failures are logged."""
    for argv in cleanup:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env()
            )
        except OSError as exc:
            log.warning("job.cleanup_command_failed", command=list(argv), error=repr(exc))
            continue
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), CLEANUP_TIMEOUT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("job.cleanup_command_failed", command=list(argv), error="timed out")
            continue
        said = out.decode(errors="replace")
        if proc.returncode != 0 and NOTHING_TO_CLEAN not in said.lower():
            log.warning("job.cleanup_command_failed", command=list(argv), exit_code=proc.returncode, output=said[-500:])


async def kill_leftovers(
    work_dir: Path, pid: int | None, create_time: float | None, grace: float, cleanup: Cleanup = ()
) -> None:
    """Stop every process group of a job we no longer follow: its leader's, and any with its WORK_DIR.

    Then its ``cleanup`` commands run (its container is removed).
    """
    groups: set[int] = set()
    if pid and same_process(pid, create_time):
        groups.add(pid)  # executors lead their own session: pgid == pid
    for proc in processes_with_env("WORK_DIR", str(work_dir)):
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    groups.discard(os.getpgid(0))
    await asyncio.gather(*(kill_stale_group(g, grace) for g in groups))
    if cleanup:
        await run_cleanup(cleanup)
