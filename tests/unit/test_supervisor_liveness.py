"""The supervisor's side of liveness: the probe's verdict, the state checks before start, leftovers."""

from __future__ import annotations

import asyncio
import errno
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core import liveness, state
from tendril.core.channel import open_channel
from tendril.core.errors import CoreReason, StateError
from tendril.core.server import Binding, ServiceServer
from tendril.job.service import JobService
from tendril.lease.service import DB_NAME
from tendril.supervisor.errors import SupervisorError
from tendril.supervisor.health import LivenessProbe, Started
from tendril.supervisor.ports import check_ports
from tendril.supervisor.prepare import _ended_uncleanly, prepare
from tendril.supervisor.specs import child_specs
from tendril.supervisor.statusfile import SupervisorStatus, write_status
from tendril.supervisor.supervisor import Supervisor
from tests.procs import worker_config


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_probe_verdict_kills_on_not_serving_at_once_and_on_silence_after_the_limit() -> None:
    clock = Clock()
    probe = LivenessProbe("127.0.0.1:1", peer_id="w", unresponsive_seconds=5.0, clock=clock)
    assert probe.timeout == 4.0  # a slow answer still lands inside the limit
    assert probe.verdict() is None
    clock.now += 4.9
    probe.answered(None, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert probe.verdict() is None
    clock.now += 0.2
    why = probe.verdict()
    assert why is not None and "answered no health check for 5.1s (last: DEADLINE_EXCEEDED)" in why
    probe.answered(health_pb2.HealthCheckResponse.SERVING)
    assert probe.verdict() is None
    probe.answered(None, grpc.StatusCode.NOT_FOUND)  # a server without the liveness name: it answers
    clock.now += 3
    assert probe.verdict() is None
    probe.answered(health_pb2.HealthCheckResponse.NOT_SERVING)
    why = probe.verdict()
    assert why is not None and "reported NOT_SERVING on tendril.liveness" in why
    assert probe.probes == 4


async def test_probe_sees_a_live_server_then_its_stalled_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness, "STALL_GRACE_SECONDS", 0.1)
    server = ServiceServer("127.0.0.1:0", [], config_key="test.listen")
    await server.start()
    probe = LivenessProbe(server.address, peer_id="w", unresponsive_seconds=5.0, interval=0.05)
    running = asyncio.create_task(probe.run())
    stuck = liveness.supervised(asyncio.Event().wait(), name="never-beats", every=0.1)
    try:
        deadline = time.monotonic() + 10
        while probe.verdict() is None:
            assert time.monotonic() < deadline, "no verdict"
            await asyncio.sleep(0.05)
        assert probe.probes >= 2 and "a loop in it stalled" in (probe.verdict() or "")
    finally:
        for task in (running, stuck):
            task.cancel()
        await asyncio.gather(running, stuck, return_exceptions=True)
        await server.stop(grace=0.1)


def _garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database" * 200)


def _malformed(path: Path) -> None:
    """A real database with a page in the middle overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 200) for i in range(2000)])
    db.commit()
    db.close()
    with open(path, "r+b") as f:
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096)


@pytest.mark.parametrize("damage", [_garbage, _malformed])
@pytest.mark.parametrize("name", [state.LEASES_DB, state.JOBS_DB])
def test_a_damaged_database_stops_the_start_with_the_file_and_the_way_out(tmp_path: Path, name: str, damage) -> None:  # type: ignore[no-untyped-def]
    config = worker_config(tmp_path)
    path = config.state_dir / name
    damage(path)
    with pytest.raises(StateError) as caught:
        prepare(config)
    error = caught.value
    assert error.reason == CoreReason.STATE_DAMAGED and error.path == str(path)
    assert f"{path} (" in error.message and "is damaged" in error.message
    assert f"mv {path} {path}.damaged" in error.message and "\n" not in error.message
    path.rename(path.with_name(name + ".damaged"))
    prepare(config).lock.close()  # the way out works: moved aside, the worker starts


def test_healthy_or_missing_databases_pass(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    sqlite3.connect(folder / state.LEASES_DB).execute("CREATE TABLE t (k)").connection.close()
    state.check_state(folder, tmp_path / "missing-work-dir")
    assert state.diagnose(folder) is None


def test_a_folder_that_takes_no_data_is_named_with_its_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(code: int):  # type: ignore[no-untyped-def]
        def temporary_file(**kwargs):  # type: ignore[no-untyped-def]
            raise OSError(code, {errno.EROFS: "Read-only file system", errno.ENOSPC: "No space left on device"}[code])

        return temporary_file

    monkeypatch.setattr(state.tempfile, "TemporaryFile", refuse(errno.EROFS))
    with pytest.raises(
        StateError, match=r"cannot write .*: Read-only file system; its file system is mounted read-only"
    ):
        state.check_writable(tmp_path)
    monkeypatch.setattr(state.tempfile, "TemporaryFile", refuse(errno.ENOSPC))
    problem = state.diagnose(tmp_path)
    assert problem is not None and problem.reason == CoreReason.STATE_NOT_WRITABLE
    assert "No space left on device; free disk space there" in problem.message


async def test_a_file_where_a_state_folder_belongs_is_named(tmp_path: Path) -> None:
    (tmp_path / "paramserver").write_text("not a folder")
    problem = state.diagnose(tmp_path)
    assert problem is not None and problem.reason == CoreReason.STATE_DAMAGED
    assert f"{tmp_path / 'paramserver'} is not a folder" in problem.message


async def test_a_child_that_cannot_start_stops_the_worker_with_its_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = prepare(worker_config(tmp_path))
    try:
        supervisor = Supervisor(prepared)
        child = supervisor.children["job"]
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        child.log_path.write_text(
            '{"event": "service.state_unusable"}\ntendril job: /x/jobs.db is damaged: why. Move it\n'
        )
        child.status.last_exit_code = 2
        supervisor._report_start_failure(child, Started.EXITED)
        assert supervisor._failed_code == 2 and child.status.state == "failed"
        assert capsys.readouterr().err == "tendril: job cannot start: /x/jobs.db is damaged: why. Move it\n"
        child.status.last_exit_code = 1  # a crash: the last lines, exit status 1 as before
        supervisor._failed_code = 1
        supervisor._report_start_failure(child, Started.EXITED)
        assert supervisor._failed_code == 1 and "Last lines of" in capsys.readouterr().err
    finally:
        prepared.lock.close()


async def test_the_state_names_are_the_services_own(tmp_path: Path) -> None:
    assert DB_NAME == state.LEASES_DB
    service = JobService(worker_config(tmp_path))
    try:
        assert service.store.path == tmp_path / "state" / state.JOBS_DB
    finally:
        service.store.close()


def test_ports_of_a_killed_supervisors_services_get_a_moment_to_come_free(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    config = worker_config(tmp_path, lease__listen=f"127.0.0.1:{port}")
    with pytest.raises(SupervisorError, match="is in use"):
        check_ports(config, child_specs(config))  # a clean start: no waiting
    threading.Timer(0.3, busy.close).start()
    started = time.monotonic()
    check_ports(config, child_specs(config), grace=5.0)
    assert 0.2 < time.monotonic() - started < 3.0

    prepare(config).lock.close()
    status = config.state_dir / "run" / "status.json"
    write_status(status, SupervisorStatus("w", 1, str(config.state_dir), state="serving"))
    assert _ended_uncleanly(status)  # killed while serving
    write_status(status, SupervisorStatus("w", 1, str(config.state_dir), state="stopped"))
    assert not _ended_uncleanly(status)
    status.unlink()
    assert not _ended_uncleanly(status)


def test_prepare_stops_services_a_killed_supervisor_left_behind(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    prepare(config).lock.close()
    config_json = config.state_dir / "run" / "config.json"
    # A process with the worker's config.json in its argv, as a service of the last supervisor.
    left = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--config-json", str(config_json)], start_new_session=True
    )
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        prepare(config).lock.close()
        assert left.wait(timeout=10) == -9
        assert bystander.poll() is None
    finally:
        for proc in (left, bystander):
            proc.kill()
            proc.wait()


async def test_a_service_that_cannot_work_is_not_ready_but_alive() -> None:
    name = "tendril.test.v1.Worker"
    server = ServiceServer("127.0.0.1:0", [Binding(name, lambda servicer, srv: None, object())], config_key="t.listen")
    await server.start()
    probe = LivenessProbe(server.address, peer_id="w", unresponsive_seconds=5.0, interval=0.05, ready_name=name)
    running = asyncio.create_task(probe.run())

    async def status(service: str) -> int:
        async with open_channel(server.address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)

    try:
        await server.set_ready(name, False)
        assert await status(name) == health_pb2.HealthCheckResponse.NOT_SERVING
        for alive in ("", liveness.HEALTH_NAME):  # nothing restarts a process that waits for its disk
            assert await status(alive) == health_pb2.HealthCheckResponse.SERVING
        deadline = time.monotonic() + 10
        while probe.ready:
            assert time.monotonic() < deadline, "the probe never saw it unready"
            await asyncio.sleep(0.05)
        assert probe.verdict() is None
        await server.set_ready(name, True)
        while not probe.ready:
            assert time.monotonic() < deadline, "the probe never saw it ready again"
            await asyncio.sleep(0.05)
        with pytest.raises(ValueError):
            await server.set_ready("not.served.here", False)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await server.stop(grace=0.1)
