"""Damaged or unusable state at start: one line naming the file and the way out, exit status 2.

Exit status 2 is what the systemd unit does not restart (RestartPreventExitStatus=2). A state
problem met by a service restarted while the worker runs is printed the same way, and the
service is tried again with the usual backoff (the disk may come back).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tendril.cli.config_template import render
from tendril.core.config import WorkerConfig
from tendril.supervisor.prepare import prepare
from tests.integration.live_worker import CLI, live_worker, until, wait_all_serving
from tests.procs import worker_config, write_config_json

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(180)]


def _run_worker(config: WorkerConfig, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    toml = tmp_path / "worker.toml"
    toml.write_text(render(config))
    return subprocess.run(
        [*CLI, "worker", "run", "--config", str(toml)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    return lines[0]


@pytest.mark.parametrize("name", ["leases.db", "jobs.db"])
def test_a_damaged_database_is_one_line_and_exit_2_and_nothing_starts(tmp_path: Path, name: str) -> None:
    config = worker_config(tmp_path)
    path = config.state_dir / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage, not SQLite" * 512)
    done = _run_worker(config, tmp_path)
    line = _one_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert line.startswith(f"tendril: {path} (") and "is damaged: file is not a database" in line
    assert f"mv {path} {path}.damaged" in line
    assert not list((config.state_dir / "logs").glob("*.log")), "a service was started"


def test_the_jobservice_alone_says_which_file_is_damaged_and_exits_2(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    (config.state_dir).mkdir(parents=True)
    (config.state_dir / "jobs.db").write_bytes(b"not a database" * 512)
    config_json = write_config_json(config, tmp_path / "job.json")
    done = subprocess.run(
        [sys.executable, "-m", "tendril.job", "--config-json", str(config_json)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    line = [x for x in done.stderr.splitlines() if x.startswith("tendril job: ")]
    assert line and "jobs.db (the job records of the JobService) is damaged" in line[0], done.stderr
    assert "Traceback" not in done.stderr


def _damage(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"not a database" * 512)


async def test_a_state_problem_met_while_running_is_printed_and_retried(tmp_path: Path) -> None:
    with live_worker(tmp_path) as worker:
        await wait_all_serving(worker)
        db = worker.config.state_dir / "jobs.db"
        old = int(worker.child("job")["pid"])
        os.kill(old, signal.SIGKILL)
        _damage(db)
        await until(lambda: "job exited with code 2: " in worker.output(), 30, "the JobService's line, relayed")
        assert f"mv {db} {db}.damaged" in worker.output()
        assert worker.status()["state"] == "serving"  # the worker stays up: the disk may recover
        db.rename(db.with_name("jobs.db.damaged"))  # the way out the line gave
        await until(lambda: worker.child("job").get("state") == "serving", 30, "the JobService back")


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _prepared(tmp_path: Path, state: Path) -> WorkerConfig:
    """A worker whose state dir (on ``state``) exists from an earlier run."""
    config = worker_config(tmp_path, worker__state_dir=str(state / "state"))
    prepare(config).lock.close()
    return config


def test_a_read_only_state_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "4m") as disk:
        config = _prepared(tmp_path, disk)
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remounted.stderr.decode().strip()}")
        done = _run_worker(config, tmp_path)
        line = _one_line(done.stderr)
        assert done.returncode == 2
        assert f"cannot write {config.state_dir / 'run'}: Read-only file system" in line
        assert "remount it read-write" in line


def test_a_full_state_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        config = _prepared(tmp_path, disk)
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        done = _run_worker(config, tmp_path)
        line = _one_line(done.stderr)
        assert done.returncode == 2
        assert f"cannot write {config.state_dir / 'run'}: No space left on device; free disk space there" in line
