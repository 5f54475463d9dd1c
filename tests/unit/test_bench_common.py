"""bench.common.spawn_on_free_ports: a child whose port was taken meanwhile starts again elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import spawn_on_free_ports, stop

# Listens on argv[1] until killed, unless argv[2] says to fail as a taken port does.
CHILD = """
import socket, sys, time
if sys.argv[2] == "taken":
    print("cannot listen on 127.0.0.1:%s: the port is already in use" % sys.argv[1], flush=True)
    sys.exit(1)
if sys.argv[2] == "broken":
    print("some other failure", flush=True)
    sys.exit(2)
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
time.sleep(60)
"""


def _starter(log: Path, modes: list[str]):  # type: ignore[no-untyped-def]
    tried: list[list[int]] = []

    def start(ports: list[int]) -> subprocess.Popen[bytes]:
        tried.append(ports)
        mode = modes[min(len(tried), len(modes)) - 1]
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, "-c", CHILD, str(ports[0]), mode], stdout=out, stderr=out)

    return start, tried


def test_a_taken_port_is_tried_again_on_new_ports(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    start, tried = _starter(log, ["taken", "taken", "listen"])
    proc, ports = spawn_on_free_ports(1, start, log, timeout=20)
    try:
        assert len(tried) == 3
        assert ports == tried[-1]
        assert proc.poll() is None
    finally:
        stop(proc)


def test_another_early_exit_raises_at_once(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_bytes(b"an earlier run: the port is already in use\n")  # (only what this start wrote counts)
    start, tried = _starter(log, ["broken", "listen"])
    with pytest.raises(RuntimeError, match="exited with 2"):
        spawn_on_free_ports(1, start, log, timeout=20)
    assert len(tried) == 1


def test_a_port_taken_every_time_gives_up(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    start, tried = _starter(log, ["taken"])
    with pytest.raises(RuntimeError, match="exited with 1"):
        spawn_on_free_ports(1, start, log, timeout=20)
    assert len(tried) == 5
