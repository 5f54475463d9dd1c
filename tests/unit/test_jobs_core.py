"""JobManager driven directly: real executor processes, a fake lease directory and bridge."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tendril.bridge.core import ProgressSink
from tendril.core.config import ExecutorConfig, WorkerConfig
from tendril.core.errors import ErrorKind
from tendril.job import core as jobs_core
from tendril.job import gpus
from tendril.job import workdir as jobs_workdir
from tendril.job.core import JobManager, LeaseInfo
from tendril.job.errors import JobError
from tendril.job.model import JobRecord, JobState
from tendril.job.reconcile import RESTART_REASON, lost_reason
from tendril.job.spec import DispatchSpec
from tendril.job.store import JobStore
from tendril_sdk.job import JobDescriptor
from tests.procs import pids_alive, worker_config

OWNER = "sched-1"

# Executors as tiny Python programs (argv, no shell).
PRINT_ENV = (
    "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
    "['SOCKET_PATH', 'WORK_DIR', 'JOB_JSON', 'TENDRIL_BRIDGE_TOKEN', 'GLIBC_TUNABLES', 'EXTRA',"
    " 'TENDRIL_PARAMSERVER_ADDRESS', 'CUDA_VISIBLE_DEVICES', 'TENDRIL_ALLOW_REMOTE_CODE']}));"
    "print('cwd=' + os.getcwd()); import sys; sys.exit(int(os.environ.get('CODE', '0')))"
)
# Starts a child in the same group, writes both pids, then sleeps (ignoring nothing).
SLEEPER = (
    "import subprocess, sys, time, os\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "open('pids', 'w').write(f'{os.getpid()} {child.pid}')\n"
    "print('sleeping', flush=True)\n"
    "time.sleep(60)\n"
)
# Fails saying why, as tendril_diloco does (tendril_sdk.write_error).
FAIL_WHY = (
    "import os, sys\n"
    "from tendril_sdk import write_error\n"
    "write_error(os.environ['WORK_DIR'], 'the model source has no config.json\\n' + 'x' * 5000)\n"
    "sys.exit(1)\n"
)
STUBBORN = (
    "import signal, time, os\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open('pids', 'w').write(str(os.getpid()))\n"
    "time.sleep(60)\n"
)


class FakeLeases:
    def __init__(self) -> None:
        self.leases: dict[str, LeaseInfo] = {}

    def add(self, lease_id: str, owner: str = OWNER, renewable: bool = True, ttl: float = 60.0, gpus: int = 0) -> None:
        self.leases[lease_id] = LeaseInfo(lease_id, owner, renewable, time.time() + ttl, gpus)

    async def get(self, lease_id: str) -> LeaseInfo | None:
        return self.leases.get(lease_id)


class FakeBridge:
    def __init__(self, job: JobDescriptor, token: str) -> None:
        self.job, self.token, self.stopped = job, token, False

    async def stop(self) -> None:
        self.stopped = True


class Harness:
    def __init__(self, tmp: Path, **overrides: Any) -> None:
        self.config: WorkerConfig = worker_config(tmp, **overrides)
        py = sys.executable
        self.config.executors = [
            ExecutorConfig("t", "env", [py, "-c", PRINT_ENV, "{SOCKET_PATH}"], env={"EXTRA": "x"}),
            ExecutorConfig("t", "fail", [py, "-c", PRINT_ENV], env={"CODE": "3"}),
            ExecutorConfig("t", "sleep", [py, "-c", SLEEPER]),
            ExecutorConfig("t", "stubborn", [py, "-c", STUBBORN]),
            ExecutorConfig("t", "fail-why", [py, "-c", FAIL_WHY]),
            ExecutorConfig("t", "missing", ["/nonexistent/executor-binary"]),
        ]
        self.store = JobStore(self.config.state_dir / "jobs.db")
        self.leases = FakeLeases()
        self.leases.add("L1")
        self.bridges: list[FakeBridge] = []
        self.manager = JobManager(self.config, self.store, self.leases, self.start_bridge)

    async def start_bridge(self, job: JobDescriptor, token: str, on_progress: ProgressSink) -> FakeBridge:
        bridge = FakeBridge(job, token)
        self.bridges.append(bridge)
        return bridge

    async def dispatch(self, job_id: str, name: str = "env", **kw: Any) -> JobRecord:
        spec = DispatchSpec(job_id=job_id, lease_id=kw.pop("lease_id", "L1"), executor_class="t", executor_name=name)
        for key, value in kw.items():
            spec = DispatchSpec(**{**spec.__dict__, key: value})
        return await self.manager.dispatch(kw.get("caller", OWNER), spec)

    async def wait_end(self, job_id: str, timeout: float = 20.0) -> JobRecord:
        async def until_end() -> JobRecord:
            async for record in self.manager.watch(job_id):
                if record.terminal:
                    return record
            raise AssertionError("watch ended before the job")

        return await asyncio.wait_for(until_end(), timeout)

    def nothing_left(self, job_id: str) -> None:
        assert not self.manager.workdirs.path_of(job_id).exists()
        assert self.store.get(job_id) is None
        assert all(b.stopped for b in self.bridges)
        assert self.manager.running == 0


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def _wait_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text := _read(path):
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _orphan_executor(work: Path) -> subprocess.Popen[bytes]:
    """A process like an executor whose JobService died: own session, WORK_DIR in its env."""
    work.mkdir(parents=True)
    (work / "executor.log").write_text("before the crash\n")
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "WORK_DIR": str(work)},
        start_new_session=True,
    )


def _env_visible(proc: subprocess.Popen[bytes]) -> bool:
    return b"WORK_DIR=" in Path(f"/proc/{proc.pid}/environ").read_bytes()


async def test_success_env_job_json_log_and_cleanup(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    started = await h.dispatch("ok-1", config={"k": "v"})
    assert started.state is JobState.RUNNING and started.pid
    work = h.manager.workdirs.path_of("ok-1")
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    doc = json.loads((work / "job.json").read_text())
    assert doc["job_id"] == "ok-1" and doc["owner_id"] == OWNER and doc["config"] == {"k": "v"}
    assert doc["executor"] == {"class": "t", "name": "env"} and doc["worker_id"] == "worker-test"
    assert "token" not in json.dumps(doc).lower()
    # One descriptor: job.json is written from the object the bridge was given.
    assert JobDescriptor.load(work / "job.json") == h.bridges[0].job
    ended = await h.wait_end("ok-1")
    assert ended.state is JobState.SUCCEEDED and ended.exit_code == 0
    assert ended.finished_at and ended.started_at
    assert not work.exists(), "work dir is removed at the end"
    text = "".join([t async for t in h.manager.logs("ok-1")])
    env = json.loads(text.splitlines()[0])
    assert env["SOCKET_PATH"] == str(work / "bridge.sock") and env["WORK_DIR"] == str(work)
    assert env["JOB_JSON"] == str(work / "job.json") and env["EXTRA"] == "x"
    assert env["TENDRIL_BRIDGE_TOKEN"] == h.bridges[0].token and len(env["TENDRIL_BRIDGE_TOKEN"]) >= 32
    assert env["GLIBC_TUNABLES"].startswith("glibc.malloc")
    assert env["TENDRIL_PARAMSERVER_ADDRESS"] is None, "executors reach the parameter server through their bridge"
    # A lease without GPUs shows the executor none; remote model code is off unless the worker allows it.
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["TENDRIL_ALLOW_REMOTE_CODE"] == "0"
    assert f"cwd={work}" in text
    assert h.bridges[0].stopped
    assert h.bridges[0].job.socket_path == work / "bridge.sock"


async def test_nonzero_exit_is_failed_and_keep_work_dirs_keeps_results(tmp_path: Path) -> None:
    h = Harness(tmp_path, job__keep_work_dirs=True)
    await h.dispatch("bad-1", name="fail")
    ended = await h.wait_end("bad-1")
    assert ended.state is JobState.FAILED and ended.exit_code == 3
    assert "exited with code 3" in ended.reason
    work = h.manager.workdirs.path_of("bad-1")
    assert (work / "job.json").exists() and (work / "executor.log").exists()
    assert not (work / "bridge.sock").exists()


async def test_the_executors_own_reason_follows_the_exit_code(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.dispatch("why-1", name="fail-why")
    ended = await h.wait_end("why-1")
    assert ended.state is JobState.FAILED and ended.exit_code == 1
    assert ended.reason.startswith("the executor exited with code 1: the model source has no config.json x")
    assert "\n" not in ended.reason and len(ended.reason) < 1100, "one line, bounded"


async def test_gpu_leases_get_their_own_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    h = Harness(tmp_path, resources__gpu=-1, job__allow_remote_code=True)
    h.leases.add("G2", gpus=2)
    h.leases.add("G1", gpus=1)
    await h.dispatch("g-a", lease_id="G2", name="sleep")
    await h.dispatch("g-b", lease_id="G2", name="env")
    await h.dispatch("g-c", lease_id="G1", name="env")
    seen = {}
    for job_id in ("g-b", "g-c"):
        await h.wait_end(job_id)
        text = "".join([t async for t in h.manager.logs(job_id)])
        seen[job_id] = json.loads(text.splitlines()[0])
    assert seen["g-b"]["CUDA_VISIBLE_DEVICES"] == "4,5", "jobs of one lease share its devices"
    assert seen["g-c"]["CUDA_VISIBLE_DEVICES"] == "6", "another lease gets the free ones"
    assert seen["g-c"]["TENDRIL_ALLOW_REMOTE_CODE"] == "1"
    await h.manager.cancel(OWNER, "g-a", "done")


def test_gpu_assignment() -> None:
    devices = ("0", "1", "2")
    assert gpus.assign("L", 0, devices, []) == ()
    assert gpus.assign("L", 2, devices, [("M", ("0",))]) == ("1", "2")
    assert gpus.assign("L", 1, devices, [("L", ("2",)), ("M", ("0",))]) == ("2",)
    assert gpus.assign("L", 2, devices, [("M", ("0", "1"))]) == ("2", "0"), "shares rather than fails"
    assert gpus.worker_devices(-1, {"CUDA_VISIBLE_DEVICES": "3, 7"}) == ("3", "7")
    assert gpus.worker_devices(1, {"CUDA_VISIBLE_DEVICES": "3,7"}) == ("3",)
    assert gpus.worker_devices(2, {}) == ("0", "1")


async def test_cancel_kills_the_whole_group_and_checks_the_owner(tmp_path: Path) -> None:
    h = Harness(tmp_path, job__kill_grace_seconds=5)
    await h.dispatch("c-1", name="sleep")
    work = h.manager.workdirs.path_of("c-1")
    pids = [int(p) for p in (await _wait_file(work / "pids")).split()]
    assert len(pids_alive(pids)) == 2
    with pytest.raises(JobError) as denied:
        await h.manager.cancel("someone-else", "c-1")
    assert denied.value.kind is ErrorKind.PERMISSION_DENIED
    begun = time.monotonic()
    record = await h.manager.cancel(OWNER, "c-1", "test says stop")
    assert time.monotonic() - begun < 4, "SIGTERM ends a default-handling executor at once"
    assert record.state is JobState.CANCELLED and record.reason == "test says stop"
    assert record.exit_code == -signal.SIGTERM
    assert pids_alive(pids) == [], "executor and its child are gone"
    assert not work.exists()
    again = await h.manager.cancel(OWNER, "c-1")
    assert again.state is JobState.CANCELLED, "cancelling an ended job returns it unchanged"


async def test_sigterm_ignored_means_sigkill_after_grace(tmp_path: Path) -> None:
    h = Harness(tmp_path, job__kill_grace_seconds=0.5)
    await h.dispatch("s-1", name="stubborn")
    pid = int(await _wait_file(h.manager.workdirs.path_of("s-1") / "pids"))
    record = await asyncio.wait_for(h.manager.cancel(OWNER, "s-1"), 15)
    assert record.exit_code == -signal.SIGKILL
    assert pids_alive([pid]) == []


async def test_timeout_fails_the_job(tmp_path: Path) -> None:
    h = Harness(tmp_path, job__default_timeout_seconds=0.5, job__kill_grace_seconds=1)
    await h.dispatch("t-1", name="sleep")
    ended = await h.wait_end("t-1")
    assert ended.state is JobState.FAILED and "timed out after 0.5 s" in ended.reason
    # A per-job timeout wins over the default.
    await h.dispatch("t-2", name="env", timeout_seconds=30.0)
    assert (await h.wait_end("t-2")).state is JobState.SUCCEEDED


async def test_lease_end_cancels_its_jobs(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.leases.add("L2")
    await h.dispatch("l-1", name="sleep")
    await h.dispatch("l-2", name="sleep", lease_id="L2")
    h.manager.on_lease_ended("L1", "expired")
    ended = await h.wait_end("l-1")
    assert ended.state is JobState.CANCELLED and ended.reason == "lease L1 expired"
    assert h.manager.get("l-2").state is JobState.RUNNING
    del h.leases.leases["L2"]
    await h.manager.check_leases()
    assert (await h.wait_end("l-2")).state is JobState.CANCELLED
    with pytest.raises(JobError) as err:
        await h.dispatch("l-3", name="env")
    assert err.value.kind is ErrorKind.NOT_FOUND, "a lease seen ending is never accepted again"


@pytest.mark.parametrize(
    ("setup", "kwargs", "kind", "reason"),
    [
        (None, {"name": "nope"}, ErrorKind.FAILED_PRECONDITION, "EXECUTOR_NOT_CONFIGURED"),
        (None, {"name": "missing"}, ErrorKind.FAILED_PRECONDITION, "EXECUTOR_START_FAILED"),
        (None, {"lease_id": "unknown"}, ErrorKind.NOT_FOUND, "LEASE_NOT_FOUND"),
        (None, {"lease_id": ""}, ErrorKind.INVALID_ARGUMENT, "LEASE_ID_MISSING"),
        (("L9", "other"), {"lease_id": "L9"}, ErrorKind.PERMISSION_DENIED, "LEASE_NOT_OWNED"),
        (("L9", OWNER, False), {"lease_id": "L9"}, ErrorKind.FAILED_PRECONDITION, "LEASE_NOT_RENEWABLE"),
        (("L9", OWNER, True, -1.0), {"lease_id": "L9"}, ErrorKind.FAILED_PRECONDITION, "LEASE_EXPIRED"),
        (None, {"timeout_seconds": -1.0}, ErrorKind.INVALID_ARGUMENT, "BAD_TIMEOUT"),
        (None, {"coordinator_address": "nohost"}, ErrorKind.INVALID_ARGUMENT, "BAD_COORDINATOR_ADDRESS"),
        (None, {"caller": ""}, ErrorKind.UNAUTHENTICATED, "CALLER_UNKNOWN"),
    ],
)
async def test_failed_dispatch_leaves_nothing(
    tmp_path: Path, setup: tuple[Any, ...] | None, kwargs: dict[str, Any], kind: ErrorKind, reason: str
) -> None:
    h = Harness(tmp_path)
    if setup:
        h.leases.add(*setup)
    caller = kwargs.pop("caller", OWNER)
    spec_kwargs = {"name": kwargs.pop("name", "env"), **kwargs}
    name = spec_kwargs.pop("name")
    spec = DispatchSpec(
        job_id="f-1",
        lease_id=spec_kwargs.pop("lease_id", "L1"),
        executor_class="t",
        executor_name=name,
        **spec_kwargs,
    )
    with pytest.raises(JobError) as err:
        await h.manager.dispatch(caller, spec)
    assert (err.value.kind, err.value.reason) == (kind, reason)
    h.nothing_left("f-1")
    # The id is still free: a correct dispatch with it works.
    assert (await h.dispatch("f-1")).state is JobState.RUNNING
    await h.wait_end("f-1")


async def test_bad_id_duplicate_and_concurrency_limit(tmp_path: Path) -> None:
    h = Harness(tmp_path, job__max_concurrent_jobs=1)
    with pytest.raises(JobError) as bad:
        await h.dispatch("no/slash")
    assert bad.value.kind is ErrorKind.INVALID_ARGUMENT
    await h.dispatch("d-1", name="sleep")
    with pytest.raises(JobError) as full:
        await h.dispatch("d-2")
    assert full.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert not h.manager.workdirs.path_of("d-2").exists()
    with pytest.raises(JobError) as dup:
        await h.dispatch("d-1")
    assert dup.value.kind is ErrorKind.ALREADY_EXISTS
    await h.manager.cancel(OWNER, "d-1")
    with pytest.raises(JobError) as reused:
        await h.dispatch("d-1")
    assert reused.value.kind is ErrorKind.ALREADY_EXISTS, "ids are never reused, even after the job ended"


async def test_too_long_socket_path_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path, worker__work_dir=str(tmp_path / ("w" * 60)))
    with pytest.raises(JobError) as err:
        await h.dispatch("x" * 64)
    assert err.value.reason == "SOCKET_PATH_TOO_LONG"
    assert "worker.work_dir" in err.value.message


async def test_watch_all_logs_follow_and_progress(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seen: list[tuple[str, JobState]] = []

    async def watch_all() -> None:
        async for record in h.manager.watch():
            seen.append((record.job_id, record.state))

    watcher = asyncio.create_task(watch_all())
    await asyncio.sleep(0)
    await h.dispatch("w-1", name="sleep")
    h.manager.report_progress("w-1", {"round": 2.0, "loss": 1.5})
    assert h.manager.get("w-1").progress == {"round": 2.0, "loss": 1.5}
    await _wait_file(h.manager.workdirs.path_of("w-1") / "pids")

    async def follow() -> str:
        return "".join([t async for t in h.manager.logs("w-1", tail_lines=1, follow=True)])

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    assert not follower.done(), "follow keeps streaming while the job runs"
    await h.manager.cancel(OWNER, "w-1")
    assert "sleeping" in await asyncio.wait_for(follower, 10)
    assert h.manager.get("w-1").progress == {"round": 2.0, "loss": 1.5}, "progress is kept in the record"
    await asyncio.sleep(0.05)
    assert seen == [("w-1", JobState.RUNNING), ("w-1", JobState.CANCELLED)]
    await h.manager.shutdown()
    await asyncio.wait_for(watcher, 5)
    with pytest.raises(JobError) as unknown:
        h.manager.get("nope")
    assert unknown.value.kind is ErrorKind.NOT_FOUND
    assert [r.job_id for r in h.manager.list([JobState.CANCELLED])] == ["w-1"]


async def test_shutdown_cancels_everything_within_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_core, "SHUTDOWN_GRACE_CAP_SECONDS", 1.0)  # the real cap is 5 s; keep the test short
    h = Harness(tmp_path, job__kill_grace_seconds=30)
    await h.dispatch("x-1", name="stubborn")
    await h.dispatch("x-2", name="sleep")
    pid = int(await _wait_file(h.manager.workdirs.path_of("x-1") / "pids"))
    begun = time.monotonic()
    await h.manager.shutdown()
    assert time.monotonic() - begun < 6, "the 30 s grace is capped so a stop ends within 10 s"
    assert pids_alive([pid]) == []
    assert {r.state for r in h.manager.list()} == {JobState.CANCELLED}
    with pytest.raises(JobError) as err:
        await h.dispatch("x-3")
    assert err.value.kind is ErrorKind.UNAVAILABLE


async def test_reconcile_kills_leftovers_and_fails_their_jobs(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    # What a killed JobService leaves: a RUNNING record whose executor (own session) still runs,
    # and a work dir with a live executor but no record (it died mid-dispatch).
    recorded = h.manager.workdirs.path_of("r-1")
    stray = h.manager.workdirs.path_of("r-2")
    procs = [_orphan_executor(recorded), _orphan_executor(stray)]
    try:
        record = JobRecord("r-1", "L1", OWNER, "t", "sleep", JobState.PENDING, time.time(), str(recorded))
        h.store.insert(record)
        h.store.transition(record, JobState.RUNNING, pid=procs[0].pid, started_at=time.time())
        deadline = time.monotonic() + 10
        while not all(_env_visible(p) for p in procs):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        fresh = JobManager(h.config, h.store, h.leases, h.start_bridge)
        await asyncio.wait_for(fresh.reconcile(), 20)
        for proc in procs:
            assert proc.wait(timeout=5) == -signal.SIGTERM
        ended = fresh.get("r-1")
        # A job that cannot be re-adopted (here: no shim was recorded for it) still ends FAILED;
        # its reason now starts with "job service restarted" and says why it was not re-adopted.
        assert ended.state is JobState.FAILED and ended.reason.startswith(RESTART_REASON)
        assert ended.reason == lost_reason("no record of its shim was kept")
        assert not recorded.exists() and not stray.exists()
        assert "before the crash" in "".join([t async for t in fresh.logs("r-1")])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _cleanup_failures() -> float:
    return REGISTRY.get_sample_value("tendril_job_cleanup_failures_total") or 0.0


def _break_removal(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make every work dir removal fail (as a busy mount or an undeletable file would); returns the attempts."""
    attempts: list[Path] = []

    def broken(path: Path) -> None:
        attempts.append(path)
        raise OSError(errno.EBUSY, "Device or resource busy", str(path))

    monkeypatch.setattr(jobs_workdir, "remove_tree", broken)
    return attempts


async def test_failed_cleanup_still_ends_the_job_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    before = _cleanup_failures()
    attempts = _break_removal(monkeypatch)
    await h.dispatch("cu-1")
    ended = await h.wait_end("cu-1")
    assert ended.state is JobState.SUCCEEDED and ended.exit_code == 0
    assert h.store.get("cu-1").state is JobState.SUCCEEDED, "the end is recorded, not only published"
    assert h.manager.running == 0
    first = h.manager.workdirs.path_of("cu-1")
    assert attempts == [first] and first.exists()
    assert "cwd=" in "".join([t async for t in h.manager.logs("cu-1")]), "the log stays readable"
    # a cancel returns with the job ended too
    await h.dispatch("cu-2", name="sleep")
    second = h.manager.workdirs.path_of("cu-2")
    await _wait_file(second / "pids")
    cancelled = await asyncio.wait_for(h.manager.cancel(OWNER, "cu-2"), 10)
    assert cancelled.state is JobState.CANCELLED and h.store.get("cu-2").state is JobState.CANCELLED
    assert h.manager.workdirs.backlog == {"cu-1": first, "cu-2": second}
    assert _cleanup_failures() - before >= 3, "every failed attempt is counted (cu-1 was retried at cu-2's end)"
    # once removal works again, the periodic retry removes both leftovers
    monkeypatch.undo()
    retrying = asyncio.create_task(h.manager.workdirs.retry_forever(0.05))
    try:
        deadline = time.monotonic() + 10
        while h.manager.workdirs.backlog:
            assert time.monotonic() < deadline, "the retry never removed the leftovers"
            await asyncio.sleep(0.02)
    finally:
        retrying.cancel()
    assert not first.exists() and not second.exists()
    assert "cwd=" in "".join([t async for t in h.manager.logs("cu-1")]), "the saved log serves it now"
    assert {r.state for r in h.manager.list()} == {JobState.SUCCEEDED, JobState.CANCELLED}


async def test_failed_log_save_keeps_the_work_dir_and_the_job_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    h.config.state_dir.mkdir(parents=True, exist_ok=True)
    (h.config.state_dir / "logs").write_text("a file where the logs dir should be")
    await h.dispatch("ls-1")
    ended = await h.wait_end("ls-1")
    assert ended.state is JobState.SUCCEEDED
    work = h.manager.workdirs.path_of("ls-1")
    assert work.exists(), "removing the dir would lose the only copy of the log"
    assert "cwd=" in "".join([t async for t in h.manager.logs("ls-1")])
    (h.config.state_dir / "logs").unlink()
    assert h.manager.workdirs.retry() == 0
    assert not work.exists()
    assert "cwd=" in "".join([t async for t in h.manager.logs("ls-1")])


async def test_reconcile_removes_what_a_failed_cleanup_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backlog is in memory: after a restart, reconciliation finds the leftover dir itself."""
    h = Harness(tmp_path)
    _break_removal(monkeypatch)
    await h.dispatch("rc-1")
    await h.wait_end("rc-1")
    work = h.manager.workdirs.path_of("rc-1")
    assert work.exists()
    monkeypatch.undo()
    fresh = JobManager(h.config, h.store, h.leases, h.start_bridge)
    await asyncio.wait_for(fresh.reconcile(), 20)
    assert not work.exists()
    assert fresh.get("rc-1").state is JobState.SUCCEEDED
    assert "cwd=" in "".join([t async for t in fresh.logs("rc-1")])


async def test_reconcile_ends_leftover_jobs_even_when_their_cleanup_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    work = h.manager.workdirs.path_of("rf-1")
    work.mkdir(parents=True)
    (work / "executor.log").write_text("before the crash\n")
    record = JobRecord("rf-1", "L1", OWNER, "t", "sleep", JobState.PENDING, time.time(), str(work))
    h.store.insert(record)
    h.store.transition(record, JobState.RUNNING, started_at=time.time())
    _break_removal(monkeypatch)
    fresh = JobManager(h.config, h.store, h.leases, h.start_bridge)
    await asyncio.wait_for(fresh.reconcile(), 20)
    assert fresh.get("rf-1").state is JobState.FAILED
    assert work.exists() and fresh.workdirs.backlog == {"rf-1": work}
    monkeypatch.undo()
    assert fresh.workdirs.retry() == 0 and not work.exists()
    assert "before the crash" in "".join([t async for t in fresh.logs("rf-1")])
