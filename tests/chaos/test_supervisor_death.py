"""A supervisor killed with SIGKILL takes its services with it, and a new one starts at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tendril.core.process import SUPERVISOR_PID_ENV
from tendril.core.server import check_bindable
from tendril.supervisor.specs import child_specs, listen_address
from tests.integration.live_worker import CLI, LiveWorker, live_worker, until, wait_all_serving
from tests.procs import pids_alive, running, spawn

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(180)]


def _addresses(worker: LiveWorker) -> list[str]:
    config = worker.config
    return [listen_address(config, spec) for spec in child_specs(config)] + [config.data_listen()]


async def test_a_killed_supervisor_leaves_no_service_and_the_worker_restarts_at_once(tmp_path: Path) -> None:
    with live_worker(tmp_path) as worker:
        await wait_all_serving(worker)
        children = [int(c["pid"]) for c in worker.status()["children"].values()]
        assert len(children) == 6
        killed_at = time.monotonic()
        os.kill(worker.proc.pid, signal.SIGKILL)
        await until(lambda: not pids_alive(children), 10, f"every service of the killed supervisor gone: {children}")
        gone = time.monotonic() - killed_at
        # Started at once: a service shows as gone once its main thread exited and holds its
        # ports until its last thread has; the new supervisor gives them a moment (prepare.py).
        log = tmp_path / "second.out"
        started_at = time.monotonic()
        second = spawn([*CLI, "worker", "run", "--config", str(worker.toml)], log=log)
        with running(second):
            again = LiveWorker(second, worker.config, worker.toml, log)
            await until(lambda: again.status().get("supervisor_pid") == second.pid, 30, "the new status.json")
            await wait_all_serving(again)
            back = time.monotonic() - started_at
            os.kill(second.pid, signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 20) == 0, again.output()
    print(
        f"\nsupervisor SIGKILL -> all 6 services gone: {gone:.2f}s; tendril worker run at once -> serving: {back:.2f}s"
    )
    assert gone < 3.0
    assert not any(check_bindable(a) for a in _addresses(worker)), "a port is still held after the stop"


SCRIPT = (
    "import os\n"
    "from tendril.core.process import SUPERVISOR_PID_ENV, die_with_supervisor\n"
    "die_with_supervisor()\n"
    "print('running; passed on to what it spawns:', os.environ.get(SUPERVISOR_PID_ENV))\n"
)


def test_a_service_whose_supervisor_died_before_it_armed_the_signal_exits_at_once() -> None:
    # The parent check behind PR_SET_PDEATHSIG: pid 1 is never this child's parent.
    env = {**os.environ, SUPERVISOR_PID_ENV: "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "running" not in done.stdout
    assert "the supervisor (pid 1) is gone; exiting" in done.stderr
    # With its real parent it runs, and the variable is not inherited by the processes it spawns.
    env[SUPERVISOR_PID_ENV] = str(os.getpid())
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "running; passed on to what it spawns: None\n", done.stderr
