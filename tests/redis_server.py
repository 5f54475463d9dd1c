"""A throwaway redis-server for tests: 127.0.0.1, a free port, a temp dir, no persistence.

Redis comes from Debian's ``redis-server`` package (.ci/run installs it); where it is absent
the tests that need it skip with that message.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import free_port, kill_group

REDIS_SERVER = shutil.which("redis-server")
NO_REDIS = "redis-server is not installed (apt-get install redis-server; .ci/run installs it)"


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` again on the same port."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None, NO_REDIS
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.folder / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}: see {self.folder / 'redis.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc, signal.SIGKILL)
            self.proc = None


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """A running redis-server for the block (skips the test where redis-server is absent)."""
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS)
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One redis-server for a test module (tests keep apart by key prefix)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url
