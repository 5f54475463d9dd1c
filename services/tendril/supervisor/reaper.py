"""Leave no process behind: adopt orphaned descendants, reap them, kill what is left at the end.

The supervisor makes itself a *child subreaper* (Linux prctl): when a service process dies
(``kill -9`` of JobService), its executors are re-parented to the supervisor instead of init,
so they stay visible as descendants and are reaped (or killed at stop) by it. Where that is
not available, :class:`Descendants` still remembers every process it saw below the
supervisor and kills those that are left at stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

import psutil

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux only); False where the kernel does not support it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_adopted(managed: set[int]) -> list[int]:
    """Collect the exit status of adopted (not ``managed``) children that ended; their pids."""
    reaped = []
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process().children():
            if proc.pid in managed:
                continue  # subprocess.Popen reaps the children it started
            with contextlib.suppress(psutil.Error, ChildProcessError):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(proc.pid, os.WNOHANG)
                    reaped.append(proc.pid)
    return reaped


def kill_process_and_group(proc: psutil.Process) -> None:
    """SIGKILL ``proc`` and, when it leads a process group other than ours, that whole group."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        group = os.getpgid(proc.pid)
        if group == proc.pid and group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        proc.kill()


class Descendants:
    """Every process seen below the supervisor since the last :meth:`snapshot` calls."""

    def __init__(self) -> None:
        self._seen: dict[int, psutil.Process] = {}

    def snapshot(self) -> None:
        """Remember the current descendants; forget those that ended (pid reuse is checked)."""
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process().children(recursive=True):
                self._seen.setdefault(proc.pid, proc)
        for pid, proc in list(self._seen.items()):
            if not proc.is_running():
                del self._seen[pid]

    def kill_all(self) -> list[int]:
        """SIGKILL every remembered or current descendant still running; their pids."""
        self.snapshot()
        killed = []
        for pid, proc in list(self._seen.items()):
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    kill_process_and_group(proc)
                    killed.append(pid)
        return killed

    def alive(self) -> bool:
        """True while any process (a zombie not yet reaped included) is still below the supervisor."""
        with contextlib.suppress(psutil.Error):
            return bool(psutil.Process().children(recursive=True))
        return False


LEFTOVER_WAIT_SECONDS = 5.0


def stop_leftovers(config_json: Path, timeout: float = LEFTOVER_WAIT_SECONDS) -> list[int]:
    """SIGKILL every process that runs with ``config_json`` (services of a supervisor that died); their pids.

    Called with the state dir's lock held, so no live supervisor owns such a process. Its
    services die with a killed supervisor by themselves (PR_SET_PDEATHSIG); this catches those
    that were still dying, or that ran without it, before their ports are checked.
    """
    marker = str(config_json)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and marker in (proc.info["cmdline"] or []):
                kill_process_and_group(proc)
                found.append(proc)
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in found) and time.monotonic() < deadline:
        time.sleep(0.02)  # NOTE: not our children: a zombie waits for init to reap it, its ports are free
    return [p.pid for p in found]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
