"""Shared bits of the benchmarks: figures, processes, GLIBC_TUNABLES, temp space."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tendril.core.ports import free_port
from tendril.core.process import child_env

# NOTE: bench is run from the checkout (`python -m bench`), not installed; its child processes
# start with PYTHONSAFEPATH (no working directory on sys.path), so they get the checkout here.
CHECKOUT = str(Path(__file__).resolve().parent.parent)
# The checkout's source roots come first on a child's path: a bench run from another checkout
# (an older commit in a git worktree, to compare) then measures that checkout's services and
# executors, not the ones the virtual environment's editable install points at.
SOURCE_PATH = os.pathsep.join(
    [CHECKOUT, *(str(Path(CHECKOUT) / root) for root in ("services", "executors", "clients/python"))]
)
GIB = 1024**3
MIB = 1024**2


@dataclasses.dataclass
class Figure:
    """One line of the table: a measured value beside its baseline or target."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def not_measured(cls, name: str, reason: str) -> Figure:
        return cls(name, None, "", note=f"not measured: {reason}")


def data_plane_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a data-plane process: malloc tuned from its first instruction (REFERENCE §C)."""
    return child_env({"PYTHONPATH": SOURCE_PATH, **(extra or {})})


def spawn_python(args: list[str], *, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python ARGS`` in its own session, data-plane env, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=data_plane_env(env),
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# A port found free can be taken by another process before the child binds it; a child that
# reports exactly that is started again on other ports.
PORT_TAKEN_MARKERS = ("already in use", "Address already in use", "PORT_IN_USE")
PORT_ATTEMPTS = 5


def spawn_on_free_ports(
    count: int, start: Callable[[list[int]], subprocess.Popen[bytes]], log: Path, *, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """``start(ports)`` with ``count`` ports free a moment ago, once it listens on all of them.

    ``log`` is the child's log: when the child exits before listening and the log says a port
    was taken meanwhile, it is started again on new ports (at most PORT_ATTEMPTS times); any
    other early exit raises at once.
    """
    for attempt in range(1, PORT_ATTEMPTS + 1):
        ports = [free_port() for _ in range(count)]
        mark = log.stat().st_size if log.exists() else 0
        proc = start(ports)
        try:
            for port in ports:
                wait_for_port(port, proc, timeout)
        except RuntimeError:
            stop(proc)
            with open(log, "rb") as f:
                f.seek(mark)
                said = f.read().decode(errors="replace")
            if attempt < PORT_ATTEMPTS and any(m in said for m in PORT_TAKEN_MARKERS):
                continue
            raise
        except BaseException:
            stop(proc)
            raise
        return proc, ports
    raise AssertionError("unreachable")


def write_pattern_file(path: Path, size: int) -> None:
    """``size`` bytes of non-zero, non-repeating-per-page data (real pages, not a sparse file)."""
    import numpy as np

    block = np.random.default_rng(0).integers(0, 256, size=8 * MIB, dtype=np.uint8)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            f.write(piece.tobytes())
            block = np.roll(block, 4099)
            written += len(piece)
