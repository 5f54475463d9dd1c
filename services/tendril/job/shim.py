"""A job's shim: the parent of one executor, so that the executor outlives its JobService.

``python -m tendril.job.shim <work_dir>`` is what JobService starts for each job, in a session
of its own. It reads its orders as one JSON document on stdin — ``argv``, ``env``, ``log``
(the executor's log file), optionally ``cleanup`` (commands to run once the executor is gone,
e.g. the removal of its container) — starts the executor as its child (a session of its own, so its
process group id is its pid; the work dir as its current directory; stdout and stderr
appended to the log), says ``{"pid": <executor pid>}`` on stdout, and then only waits:

* SIGTERM is forwarded to the executor's process group; :data:`KILL_SIGNAL` (SIGUSR1) makes
  the shim send the group SIGKILL (a process cannot catch SIGKILL, so it needs its own word);
  SIGINT and SIGHUP are ignored (they come from a terminal, not from JobService).
* When the executor exits, the shim sends the rest of its group SIGKILL (children it did not
  wait for), reaps it, runs the ``cleanup`` commands (each bounded by
  :data:`CLEANUP_TIMEOUT_SECONDS`; a container executor's container is removed there however
  the job ended), writes :data:`EXIT_FILE` atomically (``{"exit_code", "pid",
  "finished_at"}``; negative codes: the signal that killed it), says ``{"exit_code": N}`` on
  stdout and exits 0.

NOTE (why a shim): an executor started by JobService directly is its child, and only a
parent can read a child's exit status. After a crash of JobService the executor would live
on, but its end would be unknown to the next JobService, which then could only kill it. With
the shim as the parent, the exit status is always read and kept in the work dir, so a
restarted JobService re-adopts running executors and learns the real exit code of those that
ended while it was down (see :mod:`tendril.job.reconcile`).

NOTE (no stray signal): the executor is reaped only after the last group signal: until then
its pid, and so its process group id, cannot be reused, so a forwarded signal or the final
sweep can never reach an unrelated process. Signals are forwarded by a Python handler, which
runs between two statements of this main thread; a handler that runs after ``closing`` was
set does nothing, and the reap comes after that.

If JobService dies before it read the executor's pid (a dispatch cut short), the shim kills
the executor at once: a job JobService never knew to be running must not run.

Only the standard library is imported: a shim starts for every job and must start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

EXIT_FILE = "exit.json"
KILL_SIGNAL = signal.SIGUSR1
EXIT_WRITE_ATTEMPTS = 5
EXIT_WRITE_PAUSE_SECONDS = 0.5
CLEANUP_TIMEOUT_SECONDS = 20.0
# What a cleanup command says when there was nothing left to clean (the runtime's --rm was first).
NOTHING_TO_CLEAN = "no such container"


class _State:
    pid: int | None = None  # the executor, once started
    pending: list[int]  # signals asked for before it started
    closing: bool = False  # set before the reap: from then on nothing is signalled

    def __init__(self) -> None:
        self.pending = []


def _say(message: dict[str, Any]) -> bool:
    """One JSON line to JobService on stdout; False when nobody reads it any more."""
    try:
        os.write(1, (json.dumps(message) + "\n").encode())
        return True
    except OSError:  # BrokenPipeError: the JobService that started us is gone
        return False


def _complain(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"tendril shim {os.getpid()}: {text}\n".encode())


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _install_handlers(state: _State) -> None:
    def forward(signum: int, frame: FrameType | None) -> None:
        sig = signal.SIGKILL if signum == KILL_SIGNAL else signal.SIGTERM
        if state.closing:
            return
        if state.pid is None:
            state.pending.append(sig)
        else:
            _signal_group(state.pid, sig)

    def ignore(signum: int, frame: FrameType | None) -> None:
        return None

    signal.signal(signal.SIGTERM, forward)
    signal.signal(KILL_SIGNAL, forward)
    # NOTE: handlers, not SIG_IGN: an ignored disposition would be inherited by the executor.
    signal.signal(signal.SIGINT, ignore)
    signal.signal(signal.SIGHUP, ignore)


def write_exit(work_dir: str, code: int, pid: int) -> bool:
    """Write ``exit.json`` atomically and durably; retried a few times (a full disk may clear)."""
    target = os.path.join(work_dir, EXIT_FILE)
    tmp = os.path.join(work_dir, f".{EXIT_FILE}.tmp")
    body = json.dumps({"exit_code": code, "pid": pid, "finished_at": time.time()}).encode()
    for attempt in range(EXIT_WRITE_ATTEMPTS):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            dir_fd = os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return True
        except OSError as exc:
            _complain(f"cannot write {target}: {exc.strerror or exc} (attempt {attempt + 1})")
            time.sleep(EXIT_WRITE_PAUSE_SECONDS)
    return False


def read_exit(work_dir: str, pid: int | None = None) -> int | None:
    """The exit code a shim recorded in ``work_dir`` (for executor ``pid`` when given), else None."""
    try:
        with open(os.path.join(work_dir, EXIT_FILE), "rb") as f:
            doc = json.loads(f.read())
        code = doc["exit_code"]
        if not isinstance(code, int) or (pid is not None and doc.get("pid") != pid):
            return None
        return code
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_cleanup(commands: list[list[str]]) -> None:
    """Run each command (no shell), bounded; a failure is said on stderr (JobService's log)."""
    for argv in commands:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CLEANUP_TIMEOUT_SECONDS,
                close_fds=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            _complain(f"clean-up {argv!r} failed: {exc}")
            continue
        said = (done.stderr or done.stdout).strip()
        if done.returncode != 0 and NOTHING_TO_CLEAN not in said.lower():
            _complain(f"clean-up {argv!r} exited with code {done.returncode}: {said[-500:]}")


def _start(orders: dict[str, Any], work_dir: str) -> subprocess.Popen[bytes]:
    log = os.open(orders["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            list(orders["argv"]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(orders["env"]),
            cwd=work_dir,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log)


def run(work_dir: str) -> int:
    state = _State()
    _install_handlers(state)
    try:
        orders = json.loads(sys.stdin.buffer.read())
        cleanup = [[str(arg) for arg in argv] for argv in orders.get("cleanup", [])]
        popen = _start(orders, work_dir)
    except OSError as exc:
        _say({"error": exc.strerror or str(exc), "errno": exc.errno or 0})
        return 1
    except (ValueError, KeyError, TypeError) as exc:  # JobService died while it wrote the orders
        _complain(f"no usable orders on stdin: {exc!r}")
        return 1
    pid = popen.pid
    state.pid = pid
    for sig in state.pending:
        _signal_group(pid, sig)
    if not _say({"pid": pid}):
        _signal_group(pid, signal.SIGKILL)
    while True:
        try:
            # WNOWAIT: the executor stays a zombie (its pid and group id reserved) until the reap.
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            break
        except ChildProcessError:
            break
    state.closing = True
    _signal_group(pid, signal.SIGKILL)  # what the executor left in its group
    try:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        code = popen.returncode if popen.returncode is not None else -signal.SIGKILL
    popen.returncode = code  # reaped here: Popen must not wait for it again
    run_cleanup(cleanup)
    write_exit(work_dir, code, pid)
    _say({"exit_code": code})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        _complain("usage: python -m tendril.job.shim WORK_DIR (orders as JSON on stdin)")
        return 2
    return run(args[0])


if __name__ == "__main__":
    sys.exit(main())
