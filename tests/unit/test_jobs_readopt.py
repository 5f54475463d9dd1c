"""A JobManager that starts after another one died re-adopts its running executors.

The first manager "crashes" the way a SIGKILL of the JobService looks to its jobs: it stops
following them and records nothing more (its supervision is cancelled and its end-of-job path
made a no-op). The executors run on under their shims; a fresh manager over the same store and
work dirs reconciles them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tendril.core.config import ExecutorConfig
from tendril.job.core import JobManager
from tendril.job.model import JobRecord, JobState
from tendril.job.reconcile import lost_reason
from tendril.job.runner import JobEnd, JobRun
from tendril.job.shim import EXIT_FILE
from tendril_sdk.job import JobDescriptor
from tests.procs import pids_alive
from tests.unit.test_jobs_core import OWNER, FakeBridge, Harness, _wait_file

# Waits for a file "go" in its work dir, then exits with the code written in it.
GATED = (
    "import os, time\n"
    "open('pids', 'w').write(str(os.getpid()))\n"
    "print('waiting for go', flush=True)\n"
    "while not os.path.exists('go'):\n"
    "    time.sleep(0.02)\n"
    "raise SystemExit(int(open('go').read()))\n"
)


def _go(work: Path, code: str) -> None:
    """Write the exit code atomically: the executor reads "go" the moment it exists."""
    (work / "go.tmp").write_text(code)
    os.replace(work / "go.tmp", work / "go")


class Crashable(Harness):
    def __init__(self, tmp: Path, **overrides: Any) -> None:
        super().__init__(tmp, **overrides)
        self.config.executors.append(ExecutorConfig("t", "gated", [sys.executable, "-c", GATED]))
        self.released: list[str] = []

    async def release(self, job: JobDescriptor) -> None:
        self.released.append(job.job_id)

    async def crash(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The JobService dies: nothing it would have done from now on happens."""
        manager = self.manager

        async def records_nothing(run: JobRun, end: JobEnd) -> None:
            return None

        monkeypatch.setattr(manager, "_finish", records_nothing)
        tasks = []
        for run in manager._runs.values():
            process = run.process
            if process._pidfd is not None:
                asyncio.get_running_loop().remove_reader(process._pidfd)
                os.close(process._pidfd)
                process._pidfd = None
            assert run.task is not None
            run.task.cancel()
            tasks.append(run.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def restart(self, **kwargs: Any) -> JobManager:
        """A new JobService over the same state: reconcile, as JobService.start does."""
        kwargs.setdefault("release_bridge", self.release)
        start = kwargs.pop("start", self.start_bridge)
        self.manager = JobManager(self.config, self.store, self.leases, start, **kwargs)
        await asyncio.wait_for(self.manager.reconcile(), 30)
        return self.manager

    def work(self, job_id: str) -> Path:
        return self.manager.workdirs.path_of(job_id)


async def _gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while pids_alive([pid]):
        assert time.monotonic() < deadline, f"pid {pid} still runs"
        await asyncio.sleep(0.02)


async def _pids(path: Path) -> list[int]:
    return [int(p) for p in (await _wait_file(path)).split()]


async def test_a_running_job_is_readopted_with_its_bridge_then_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Crashable(tmp_path, job__kill_grace_seconds=5)
    started = await h.dispatch("r-1", name="sleep")
    pids = await _pids(h.work("r-1") / "pids")
    first_bridge = h.bridges[0]
    await h.crash(monkeypatch)
    assert pids_alive(pids) == pids, "the executor outlives its JobService"

    fresh = await h.restart()
    job = fresh.get("r-1")
    assert job.state is JobState.RUNNING and job.pid == started.pid and fresh.running == 1
    rebuilt = h.bridges[-1]
    assert rebuilt is not first_bridge
    assert rebuilt.token == first_bridge.token, "the executor's token works on the rebuilt bridge"
    assert rebuilt.job == first_bridge.job and rebuilt.job.socket_path == h.work("r-1") / "bridge.sock"
    assert pids_alive(pids) == pids
    assert "sleeping" in "".join([t async for t in fresh.logs("r-1")])

    begun = time.monotonic()
    record = await asyncio.wait_for(fresh.cancel(OWNER, "r-1", "test says stop"), 15)
    assert time.monotonic() - begun < 4, "Cancel reaches a re-adopted executor through its shim"
    assert record.state is JobState.CANCELLED and record.reason == "test says stop"
    assert record.exit_code == -signal.SIGTERM
    assert pids_alive(pids) == [] and not h.work("r-1").exists()
    assert rebuilt.stopped and h.released == [], "the rebuilt bridge itself closed what it held"
    assert h.store.runtime("r-1") is None


@pytest.mark.parametrize(("code", "state"), [(0, JobState.SUCCEEDED), (5, JobState.FAILED)])
async def test_a_readopted_job_ends_with_its_real_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, state: JobState
) -> None:
    h = Crashable(tmp_path)
    await h.dispatch("x-1", name="gated")
    await _pids(h.work("x-1") / "pids")
    await h.crash(monkeypatch)
    fresh = await h.restart()
    assert fresh.get("x-1").state is JobState.RUNNING
    _go(h.work("x-1"), str(code))
    ended = await h.wait_end("x-1")
    assert ended.state is state and ended.exit_code == code
    assert ended.reason == f"the executor exited with code {code}"
    assert "waiting for go" in "".join([t async for t in fresh.logs("x-1")])


async def test_an_executor_that_ended_while_the_service_was_down_keeps_its_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Crashable(tmp_path)
    await h.dispatch("d-1", name="gated", coordinator_address="127.0.0.1:1")
    pid = (await _pids(h.work("d-1") / "pids"))[0]
    await h.crash(monkeypatch)
    runtime = h.store.runtime("d-1")
    assert runtime is not None
    _go(h.work("d-1"), "4")
    await _wait_file(h.work("d-1") / EXIT_FILE)
    await _gone(runtime.shim_pid)
    fresh = await h.restart()
    ended = fresh.get("d-1")
    assert ended.state is JobState.FAILED and ended.exit_code == 4
    assert ended.reason == "the executor exited with code 4 while the JobService was down"
    assert fresh.running == 0 and not h.work("d-1").exists() and pids_alive([pid]) == []
    assert "waiting for go" in "".join([t async for t in fresh.logs("d-1")])
    await asyncio.sleep(0.05)
    assert h.released == ["d-1"], "its job at the DataFetcher is closed though no bridge of it runs"


async def test_a_lease_that_ended_while_the_service_was_down_cancels_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Crashable(tmp_path)
    await h.dispatch("l-1", name="sleep")
    pids = await _pids(h.work("l-1") / "pids")
    await h.crash(monkeypatch)
    del h.leases.leases["L1"]
    fresh = await h.restart()
    assert fresh.get("l-1").state is JobState.RUNNING
    await fresh.check_leases()  # what the lease watch does once it (re)connects
    ended = await h.wait_end("l-1")
    assert ended.state is JobState.CANCELLED and ended.reason == "lease L1 is no longer live"
    assert pids_alive(pids) == []


async def test_a_job_whose_shim_was_killed_meanwhile_is_stopped_and_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Crashable(tmp_path)
    await h.dispatch("k-1", name="sleep")
    pids = await _pids(h.work("k-1") / "pids")
    runtime = h.store.runtime("k-1")
    assert runtime is not None
    await h.crash(monkeypatch)
    os.kill(runtime.shim_pid, signal.SIGKILL)
    await _gone(runtime.shim_pid)
    fresh = await h.restart()
    ended = fresh.get("k-1")
    assert ended.state is JobState.FAILED and ended.exit_code is None
    assert ended.reason == lost_reason(f"its shim (pid {runtime.shim_pid}) is gone and recorded no exit")
    assert pids_alive(pids) == [], "the orphaned executor and its child were stopped"


async def test_a_shim_killed_under_a_running_service_fails_its_job(tmp_path: Path) -> None:
    h = Crashable(tmp_path, job__kill_grace_seconds=5)
    await h.dispatch("s-1", name="sleep")
    pids = await _pids(h.work("s-1") / "pids")
    runtime = h.store.runtime("s-1")
    assert runtime is not None
    os.kill(runtime.shim_pid, signal.SIGKILL)
    ended = await h.wait_end("s-1")
    assert ended.state is JobState.FAILED and ended.exit_code is None
    assert ended.reason == (
        f"the executor's shim (pid {runtime.shim_pid}) was killed by SIGKILL without recording the executor's "
        "exit; its processes were stopped"
    )
    assert pids_alive(pids) == []


async def test_a_bridge_that_cannot_be_rebuilt_stops_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Crashable(tmp_path)
    await h.dispatch("b-1", name="sleep")
    pids = await _pids(h.work("b-1") / "pids")
    await h.crash(monkeypatch)

    async def broken(job: JobDescriptor, token: str, on_progress: Any) -> FakeBridge:
        raise OSError("no room for a socket")

    await h.restart(start=broken)
    ended = await h.wait_end("b-1")
    assert ended.state is JobState.FAILED and ended.exit_code == -signal.SIGTERM
    assert ended.reason == lost_reason("its bridge could not be rebuilt (no room for a socket)")
    assert pids_alive(pids) == []


async def test_the_timeout_counts_from_the_start_not_from_the_readoption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Crashable(tmp_path, job__kill_grace_seconds=1)
    await h.dispatch("t-1", name="sleep", timeout_seconds=60.0)
    await _pids(h.work("t-1") / "pids")
    await h.crash(monkeypatch)
    await h.restart(clock=lambda: time.time() + 100)  # the restart came 100 s after the start
    ended = await h.wait_end("t-1")
    assert ended.state is JobState.FAILED and "timed out after 60 s" in ended.reason


async def test_pending_jobs_and_shutdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dispatch cut short is not re-adopted; a re-adopted job stops with the service."""
    h = Crashable(tmp_path, job__kill_grace_seconds=5)
    await h.dispatch("g-1", name="sleep")
    pids = await _pids(h.work("g-1") / "pids")
    cut = JobRecord("p-1", "L1", OWNER, "t", "sleep", JobState.PENDING, time.time(), str(h.work("p-1")))
    h.store.insert(cut)
    h.work("p-1").mkdir()
    await h.crash(monkeypatch)
    fresh = await h.restart()
    assert fresh.get("p-1").state is JobState.FAILED
    assert fresh.get("p-1").reason == lost_reason("it was still being dispatched")
    assert not h.work("p-1").exists()
    assert fresh.get("g-1").state is JobState.RUNNING
    begun = time.monotonic()
    await fresh.shutdown()
    assert time.monotonic() - begun < 6
    assert fresh.get("g-1").state is JobState.CANCELLED and pids_alive(pids) == []


async def test_a_cancel_cut_short_by_the_crash_is_finished_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Crashable(tmp_path, job__kill_grace_seconds=1.5)
    await h.dispatch("cc-1", name="stubborn")  # ignores SIGTERM: the cancel waits for its grace
    pid = int(await _wait_file(h.work("cc-1") / "pids"))
    cancelling = asyncio.create_task(h.manager.cancel(OWNER, "cc-1", "owner said stop"))
    deadline = time.monotonic() + 10
    while (runtime := h.store.runtime("cc-1")) is None or runtime.stop is None:
        assert time.monotonic() < deadline, "the stop request was never recorded"
        await asyncio.sleep(0.02)
    assert runtime.stop == (JobState.CANCELLED, "owner said stop")
    await h.crash(monkeypatch)  # before the grace ran out: the executor still runs
    cancelling.cancel()
    assert pids_alive([pid]) == [pid]
    await h.restart()
    ended = await h.wait_end("cc-1")
    assert ended.state is JobState.CANCELLED and ended.reason == "owner said stop"
    assert ended.exit_code == -signal.SIGKILL and pids_alive([pid]) == []


async def test_a_job_stopped_while_the_service_died_ends_as_the_stop_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JobService was stopping a job (here: shutting down) and died; the executor is gone now."""
    h = Crashable(tmp_path, job__kill_grace_seconds=30)
    await h.dispatch("st-1", name="stubborn")
    pid = int(await _wait_file(h.work("st-1") / "pids"))
    stopping = asyncio.create_task(h.manager.cancel(OWNER, "st-1", "the JobService is stopping"))
    deadline = time.monotonic() + 10
    while (runtime := h.store.runtime("st-1")) is None or runtime.stop is None:
        assert time.monotonic() < deadline, "the stop request was never recorded"
        await asyncio.sleep(0.02)
    await h.crash(monkeypatch)
    stopping.cancel()
    os.kill(runtime.shim_pid, signal.SIGKILL)  # what the supervisor's last sweep does
    os.kill(pid, signal.SIGKILL)
    await _gone(runtime.shim_pid)
    fresh = await h.restart()
    ended = fresh.get("st-1")
    assert ended.state is JobState.CANCELLED and ended.reason == "the JobService is stopping"


async def test_a_readopted_job_keeps_its_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Crashable(tmp_path)
    await h.dispatch("res-1", name="gated")
    await h.dispatch("res-2", name="gated")
    for job_id in ("res-1", "res-2"):
        await _pids(h.work(job_id) / "pids")
        (h.work(job_id) / "results" / "out.txt").write_text(job_id)
    await h.crash(monkeypatch)
    _go(h.work("res-2"), "0")  # ends while no JobService runs: kept by the restart's reconcile
    await _wait_file(h.work("res-2") / EXIT_FILE)
    runtime = h.store.runtime("res-2")
    assert runtime is not None
    await _gone(runtime.shim_pid)
    fresh = await h.restart()
    _go(h.work("res-1"), "0")  # ends under the re-adopting JobService
    await h.wait_end("res-1")
    for job_id in ("res-1", "res-2"):
        manifest = fresh.results_manifest(OWNER, job_id)
        assert [f.path for f in manifest.files] == ["out.txt"]
        assert [d for _, d, _ in fresh.fetch_result(OWNER, job_id, "out.txt", 0)] == [job_id.encode()]
        assert not h.work(job_id).exists()
