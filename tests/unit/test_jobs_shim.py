"""The job shim as a real process: it starts the executor, forwards stop signals, records the exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tendril.job.shim import EXIT_FILE, KILL_SIGNAL, read_exit
from tests.procs import pids_alive


class Shim:
    """``python -m tendril.job.shim WORK_DIR`` with its orders, as JobService starts it."""

    def __init__(self, work: Path, argv: list[str], *, close_stdout: bool = False) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tendril.job.shim", str(work)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=work,
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if close_stdout:
            self.proc.stdout.close()  # as if JobService died before it read the executor's pid
        orders = {"argv": argv, "env": {**os.environ, "WORK_DIR": str(work)}, "log": str(work / "executor.log")}
        self.proc.stdin.write(json.dumps(orders).encode())
        self.proc.stdin.close()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        return dict(json.loads(self.proc.stdout.readline()))

    def finish(self, timeout: float = 20) -> int:
        assert self.proc.wait(timeout=timeout) == 0
        assert self.proc.stdout is not None
        last = self.proc.stdout.read().decode().strip().splitlines()
        said = json.loads(last[-1])["exit_code"]
        assert read_exit(str(self.work)) == said, "the exit recorded in the work dir is the one said on stdout"
        return int(said)


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _wait_file(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_exit_code_output_and_record(tmp_path: Path) -> None:
    shim = Shim(tmp_path / "job-a", _py("import os; print('hello from', os.getcwd()); raise SystemExit(7)"))
    pid = shim.answer()["pid"]
    assert shim.finish() == 7
    doc = json.loads((tmp_path / "job-a" / EXIT_FILE).read_text())
    assert doc["pid"] == pid and doc["exit_code"] == 7
    assert f"hello from {tmp_path / 'job-a'}" in (tmp_path / "job-a" / "executor.log").read_text()
    assert read_exit(str(tmp_path / "job-a"), pid + 1) is None, "a record of another executor is not this one's"


def test_sigterm_is_forwarded_to_the_whole_group(tmp_path: Path) -> None:
    work = tmp_path / "job-b"
    code = (
        "import subprocess, sys, os, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open('pids', 'w').write(f'{os.getpid()} {child.pid}')\n"
        "time.sleep(60)\n"
    )
    shim = Shim(work, _py(code))
    pid = shim.answer()["pid"]
    pids = [int(p) for p in _wait_file(work / "pids").split()]
    assert pids[0] == pid and pids_alive(pids) == pids
    shim.proc.send_signal(signal.SIGTERM)
    assert shim.finish() == -signal.SIGTERM
    assert pids_alive(pids) == []


def test_kill_signal_ends_an_executor_that_ignores_sigterm_and_its_leftovers(tmp_path: Path) -> None:
    work = tmp_path / "job-c"
    code = (
        "import signal, subprocess, sys, os, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=False)\n"
        "open('pids', 'w').write(f'{os.getpid()} {child.pid}')\n"
        "time.sleep(60)\n"
    )
    shim = Shim(work, _py(code))
    shim.answer()
    pids = [int(p) for p in _wait_file(work / "pids").split()]
    shim.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert pids_alive(pids[:1]) == pids[:1], "the executor ignores SIGTERM"
    shim.proc.send_signal(KILL_SIGNAL)
    assert shim.finish() == -signal.SIGKILL
    assert pids_alive(pids) == []


def test_leftovers_of_an_executor_that_exits_are_swept(tmp_path: Path) -> None:
    work = tmp_path / "job-d"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open('child', 'w').write(str(child.pid))\n"
    )
    shim = Shim(work, _py(code))
    shim.answer()
    assert shim.finish() == 0
    assert pids_alive([int((work / "child").read_text())]) == []


def test_interrupts_from_a_terminal_are_not_forwarded(tmp_path: Path) -> None:
    work = tmp_path / "job-e"
    shim = Shim(work, _py("import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(60)"))
    pid = shim.answer()["pid"]
    _wait_file(work / "pid")
    for sig in (signal.SIGINT, signal.SIGHUP):
        shim.proc.send_signal(sig)
    time.sleep(0.3)
    assert shim.proc.poll() is None and pids_alive([pid]) == [pid]
    shim.proc.send_signal(signal.SIGTERM)
    assert shim.finish() == -signal.SIGTERM


def test_a_command_that_cannot_start_is_reported(tmp_path: Path) -> None:
    shim = Shim(tmp_path / "job-f", ["/nonexistent/executor-binary"])
    answer = shim.answer()
    assert "No such file" in answer["error"] and "pid" not in answer
    assert shim.proc.wait(timeout=20) == 1
    assert not (tmp_path / "job-f" / EXIT_FILE).exists()


def test_an_executor_nobody_knows_of_is_killed(tmp_path: Path) -> None:
    """JobService died before it read the executor's pid: the job never ran as far as anyone knows."""
    work = tmp_path / "job-g"
    sleeper = _py("import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(60)")
    shim = Shim(work, sleeper, close_stdout=True)
    assert shim.proc.wait(timeout=20) == 0
    assert read_exit(str(work)) == -signal.SIGKILL


@pytest.mark.parametrize("orders", [b"", b"{not json", b'{"argv": ["x"]}'])
def test_broken_orders_start_nothing(tmp_path: Path, orders: bytes) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tendril.job.shim", str(tmp_path)], input=orders, capture_output=True, timeout=30
    )
    assert done.returncode == 1 and b"no usable orders" in done.stderr
    assert not (tmp_path / EXIT_FILE).exists()


def test_usage(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tendril.job.shim"], capture_output=True, timeout=30)
    assert done.returncode == 2 and b"usage" in done.stderr
