"""The worker's cache of fetched resources: a second job does not download again; damaged or
evicted files are fetched anew; resources without a sha256 are not cached."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tendril.bridge.core import WORK_SUBDIRS, BridgeCore
from tendril.bridge.resources import ResourceCache
from tendril_sdk.job import ExecutorRef, JobDescriptor


class _Files(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        _Files.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    _Files.requests = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        lambda *a: _Files(*a, directory=str(root)),  # type: ignore[misc]
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _core(tmp_path: Path, job_id: str, cache: ResourceCache) -> BridgeCore:
    work = tmp_path / job_id
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir(parents=True)
    job = JobDescriptor(
        job_id=job_id,
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("example", "echo"),
        config={},
        work_dir=work,
        socket_path=work / "bridge.sock",
    )
    return BridgeCore(job, resources=cache)


async def test_a_second_job_takes_the_cached_resource(tmp_path: Path, served: tuple[str, Path]) -> None:
    url, root = served
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    (root / "model.tar").write_bytes(data)
    cache = ResourceCache(tmp_path / "state" / "cache" / ".resources", 1 << 20)
    one, two, three = (_core(tmp_path, f"job-{i}", cache) for i in (1, 2, 3))

    first = await one.fetch_resource(f"{url}/model.tar", "", sha)
    assert first.path.read_bytes() == data and _Files.requests == ["/model.tar"]
    second = await two.fetch_resource(f"{url}/model.tar", "ckpt/model.tar", sha.upper())
    assert second.path == two.root / "artifacts" / "ckpt" / "model.tar"
    assert (second.size_bytes, second.sha256) == (5000, sha)
    assert second.path.read_bytes() == data and _Files.requests == ["/model.tar"]  # no second download
    assert os.path.samestat(second.path.stat(), (cache.root / sha).stat())  # a hard link, read-only
    assert second.path.stat().st_mode & 0o222 == 0

    # a damaged cache file is noticed before use, removed and fetched again
    (cache.root / sha).chmod(0o644)
    (cache.root / sha).write_bytes(b"x" * 5000)
    third = await three.fetch_resource(f"{url}/model.tar", "", sha)
    assert third.path.read_bytes() == data and _Files.requests == ["/model.tar"] * 2
    assert (cache.root / sha).read_bytes() == data


async def test_without_a_sha256_nothing_is_cached(tmp_path: Path, served: tuple[str, Path]) -> None:
    url, root = served
    (root / "a.bin").write_bytes(b"abc")
    cache = ResourceCache(tmp_path / "cache", 1 << 20)
    for i in (1, 2):
        fetched = await _core(tmp_path, f"job-{i}", cache).fetch_resource(f"{url}/a.bin", "", "")
        assert fetched.path.read_bytes() == b"abc"
    assert _Files.requests == ["/a.bin", "/a.bin"] and not cache.root.exists()


def test_least_recently_used_go_first(tmp_path: Path) -> None:
    cache = ResourceCache(tmp_path / "cache", 250)
    shas = []
    for i in range(3):
        src = tmp_path / f"f{i}"
        data = bytes([i]) * 100
        src.write_bytes(data)
        shas.append(hashlib.sha256(data).hexdigest())
        os.utime(src, (1000 + i, 1000 + i))
        cache.keep(shas[-1], src)
        os.utime(cache.root / shas[-1], (1000 + i, 1000 + i))
    assert sorted(p.name for p in cache.root.iterdir()) == sorted(shas[1:])  # the oldest went
    big = tmp_path / "big"
    big.write_bytes(b"b" * 300)
    cache.keep(hashlib.sha256(b"b" * 300).hexdigest(), big)  # bigger than the cache: not kept
    assert sorted(p.name for p in cache.root.iterdir()) == sorted(shas[1:])
    assert cache.take(shas[0], tmp_path / "out" / "x") is None
