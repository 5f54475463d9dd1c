"""One supervised service process: spawn (exec, own session), signal its group, read its log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tendril.supervisor.specs import ChildSpec
from tendril.supervisor.statusfile import ChildStatus
from tendril_sdk.retry import Backoff


class Child:
    """A service process the supervisor starts, watches and stops; restarts reuse the object."""

    def __init__(
        self,
        spec: ChildSpec,
        *,
        address: str,
        config_json: Path,
        log_path: Path,
        env: Mapping[str, str],
        backoff: Backoff,
    ) -> None:
        self.spec = spec
        self.address = address
        self.config_json = config_json
        self.log_path = log_path
        self.env = dict(env)
        self.backoff = backoff
        self.proc: subprocess.Popen[bytes] | None = None
        self.serving = asyncio.Event()
        self.status = ChildStatus(name=spec.name, module=spec.module, address=address, log=str(log_path))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self) -> None:
        """Start the service process: its own session (a terminal's Ctrl-C reaches only the
        supervisor), output appended to its log file."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is already running as pid {self.proc.pid}")
        if self.proc is not None:
            self.status.restarts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", self.spec.module, "--config-json", str(self.config_json)]
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"--- tendril supervisor: starting {self.name} at {stamp}: {' '.join(argv)}\n".encode())
            log.flush()
            # NOTE: subprocess execs right after the fork (no Python code runs in the child), which
            # is safe with gRPC threads alive in the supervisor; preexec_fn would not be.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                close_fds=True,
            )
        self.serving.clear()
        self.status.pid = self.proc.pid
        self.status.state = "starting"
        self.status.started_at = time.time()
        self.status.serving_since = None

    def poll(self) -> int | None:
        """The exit code once the process ended (negative: killed by that signal), else None."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is not None and self.status.pid is not None:
            self.status.last_exit_code = code
            self.status.pid = None
        return code

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.poll() is None

    def mark_serving(self) -> None:
        self.status.state = "serving"
        self.status.serving_since = time.time()
        self.serving.set()

    def uptime(self) -> float:
        since = self.status.serving_since
        return time.time() - since if since else 0.0

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process group of the service (the service is its group leader)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to end and reap it; its exit code."""
        if self.proc is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, timeout)
        return self.poll()

    def log_tail(self, lines: int = 20) -> list[str]:
        """The last ``lines`` lines of the service's log file."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]
