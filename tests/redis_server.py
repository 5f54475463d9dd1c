"""A throwaway redis-server for tests: 127.0.0.1, a free port, a temp dir, no persistence.

Redis comes from Debian's ``redis-server`` package (.ci/run installs it); where it is absent
the tests that need it skip with that message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_proc import NO_REDIS, REDIS_SERVER, RedisServer

__all__ = ["NO_REDIS", "REDIS_SERVER", "RedisServer", "redis_server", "redis_url"]


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
