"""A frozen or stuck service is restarted within 10 s; a loop that dies takes its process down.

One worker takes every fault in turn (SIGSTOP of DataFetcher, LeaseService and Arbiter; the
Arbiter's decision loop made to die, then to stall; the LeaseService's pruner made to stall), each measured
from the fault to the service answering SERVING again from outside. Loop faults go through
``TENDRIL_TEST_FAULT_DIR`` (read only under ``TENDRIL_TESTING=1``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tendril.core import liveness
from tests.integration.live_worker import HEALTH_NAMES, LiveWorker, live_worker, until, wait_all_serving
from tests.procs import pids_alive, wait_serving

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(240)]

LIMIT_SECONDS = 10.0  # the goal: restarted and serving within 10 s of the fault


async def _restarted(worker: LiveWorker, name: str, fault: Callable[[int], None]) -> tuple[float, dict[str, object]]:
    """Inject ``fault`` into child ``name`` (given its pid); seconds until a new process serves."""
    old = worker.child(name)
    pid = int(old["pid"])
    began = time.monotonic()
    fault(pid)
    await until(
        lambda: worker.child(name).get("state") == "serving" and worker.child(name).get("pid") != pid,
        30,
        f"{name} restarted after the fault",
    )
    await wait_serving(worker.config.listen(name), HEALTH_NAMES[name], 30)
    seconds = time.monotonic() - began
    assert pids_alive([pid]) == [], f"the old {name} (pid {pid}) is still there"
    return seconds, worker.child(name)


async def test_frozen_dying_and_stalled_services_are_restarted_within_10s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv(liveness.TESTING_ENV, "1")
    monkeypatch.setenv(liveness.FAULT_DIR_ENV, str(faults))

    def inject(file: str) -> Callable[[int], None]:
        return lambda pid: (faults / file).write_text("")

    def freeze(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)

    measured: list[str] = []
    with live_worker(tmp_path) as worker:
        await wait_all_serving(worker)
        for name in ("data_fetcher", "lease", "arbiter"):
            seconds, child = await _restarted(worker, name, freeze)
            measured.append(f"SIGSTOP {name}: serving again after {seconds:.2f}s")
            assert child["hung_kills"] == 1 and child["last_exit_code"] == -signal.SIGKILL
            assert seconds < LIMIT_SECONDS, measured[-1]
            assert f"{name} (pid " in worker.output() and "answered no health check for" in worker.output()

        seconds, child = await _restarted(worker, "arbiter", inject("arbiter-decisions.die"))
        measured.append(f"Arbiter decision loop dies: serving again after {seconds:.2f}s")
        assert child["last_exit_code"] == liveness.EXIT_LOOP_DIED
        assert seconds < LIMIT_SECONDS, measured[-1]
        assert "arbiter exited with code 70" in worker.output()
        arbiter_log = (worker.config.state_dir / "logs" / "arbiter.log").read_text()
        assert "tendril: loop arbiter-decisions raised InjectedFault" in arbiter_log
        assert "liveness.loop_died" in arbiter_log and "Traceback" in arbiter_log

        seconds, child = await _restarted(worker, "arbiter", inject("arbiter-decisions.stall"))
        measured.append(f"Arbiter decision loop stalls: serving again after {seconds:.2f}s")
        assert child["hung_kills"] == 2 and seconds < LIMIT_SECONDS, measured[-1]

        seconds, child = await _restarted(worker, "lease", inject("lease-pruner.stall"))
        measured.append(f"LeaseService pruner stalls: serving again after {seconds:.2f}s")
        assert child["hung_kills"] == 2 and child["last_exit_code"] == -signal.SIGKILL
        assert seconds < LIMIT_SECONDS, measured[-1]
        assert "reported NOT_SERVING on tendril.liveness" in worker.output()
        assert "liveness.loop_stalled" in (worker.config.state_dir / "logs" / "lease.log").read_text()

        # Nothing else was touched: the other services never restarted.
        for name in ("gateway", "paramserver", "job"):
            assert worker.child(name)["restarts"] == 0, name
    print("\n" + "\n".join(measured))
