"""The bench's round sync section end to end at a tiny size: a real ParameterServer, three
worker processes in one gloo group, the figure's shape checked and nothing left running or
listening, also when a worker dies mid-run (the timings themselves are judged only by ``make bench``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bench import sync

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _processes_mentioning(text: str) -> list[tuple[int, str]]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if text in args:
            found.append((int(cmdline.parent.name), args))
    return found


def _listening_sockets_of_this_process() -> set[int]:
    """Inodes of this process's TCP sockets in LISTEN state."""
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(int(target[len("socket:[") : -1]))
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[9]) in mine:
                    listening.add(int(fields[9]))
    return listening


def test_sync_figure_shape_and_cleanup(tmp_path: Path) -> None:
    listening_before = _listening_sockets_of_this_process()

    figures = sync.measure(tmp_path, sizes_mb=(4,), codecs=("fp32",), rounds=3)

    assert len(figures) == 1
    figure = figures[0]
    assert figure.name == "round sync 4 MB fp32, 3 workers"
    assert "sync" in figure.name and figure.unit == "s"
    assert figure.baseline_name.startswith("gloo all_reduce + local outer Nesterov, 3 processes, 127.0.0.1")
    assert figure.value is not None and figure.value > 0
    assert figure.baseline is not None and figure.baseline > 0
    assert figure.target == "≤ 1.5× baseline"
    assert figure.ok == (figure.value <= 1.5 * figure.baseline)
    assert "× baseline" in figure.note and "all_reduce alone" in figure.note
    details = figure.details
    assert details["payload_bytes"] == 4_000_000 and details["workers"] == 3
    assert details["rounds"] == 3 and details["warmup_rounds"] == 2
    assert len(details["sync_seconds_rounds"]) == 1 and len(details["warmup_sync_seconds_rounds"]) == 2
    assert len(details["baseline"]["seconds_repeats"]) == 1
    assert len(details["baseline"]["all_reduce_seconds_repeats"]) == 1
    # Every part of every worker was measured, the wait for close included (WatchRound stamps).
    assert set(details["parts_median_seconds"]) == set(sync.PARTS)
    assert all(v is not None and v >= 0 for v in details["parts_median_seconds"].values())
    assert set(details["parts_median_seconds_per_worker"]) == {"w0", "w1", "w2"}
    assert len(details["ps_close_seconds_rounds"]) == 1
    # The ParameterServer's CPU per round (user, system) was read from /proc: it did work.
    cpu = details["ps_cpu_seconds_per_round"]
    assert set(cpu) == {"user", "system"} and cpu["user"] + cpu["system"] > 0 and "PS CPU" in figure.note
    # Each worker pushed and pulled the whole fp32 payload (plus its SafeTensors header).
    assert all(4_000_000 < n < 4_100_000 for n in details["bytes_sent_per_worker"])
    assert all(4_000_000 < n < 4_100_000 for n in details["bytes_received_per_worker"])
    assert len(details["load_average_before"]) == 3 and len(details["load_average_after"]) == 3
    assert {q["before"] for q in details["quiet_before_repeats"]} == {"gloo", "tendril"}

    assert _processes_mentioning(str(tmp_path)) == []
    assert _listening_sockets_of_this_process() <= listening_before
    assert not (tmp_path / "sync-work").exists() and not (tmp_path / "sync-ps-state").exists()


def test_a_worker_dying_mid_run_leaves_nothing_behind(tmp_path: Path) -> None:
    listening_before = _listening_sockets_of_this_process()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            sync.measure(tmp_path, sizes_mb=(4,), codecs=("fp32",), rounds=50)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        workers = [pid for pid, args in _processes_mentioning(str(tmp_path)) if "--rank=1" in args]
        # Its first Δ written: the worker is in its rounds.
        if workers and (tmp_path / "sync-work" / "w1" / "updates").exists():
            victim = workers[0]
        time.sleep(0.05)
    assert victim is not None, "worker 1 never reached its rounds"
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=60)

    assert not thread.is_alive()
    # Worker 1, or a peer whose gloo group broke with it, is reported.
    assert len(failure) == 1 and "sync worker" in str(failure[0]) and "exited" in str(failure[0])
    assert _processes_mentioning(str(tmp_path)) == []
    assert _listening_sockets_of_this_process() <= listening_before
