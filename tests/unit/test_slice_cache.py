"""The slice cache: LRU eviction by bytes, pins and hand-out grace, rebuild from disk."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from tendril.data_fetcher.cache import SliceCache
from tendril.data_fetcher.errors import FetcherError
from tendril.data_fetcher.model import SliceKey


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _put(cache: SliceCache, name: str, size: int, *, pin: bool = False, dataset: str = "ds") -> SliceKey:
    data = name.encode().ljust(size, b".")
    key = SliceKey(dataset, name, hashlib.sha256(data).hexdigest())
    tmp = cache.temp_path(key)
    tmp.write_bytes(data)
    cache.commit(tmp, key, pin=pin)
    return key


def _cache(tmp_path: Path, capacity: int, clock: _Clock) -> SliceCache:
    return SliceCache(tmp_path / "cache", capacity, grace_seconds=5.0, clock=clock)


def test_evicts_least_recently_used_by_bytes(tmp_path: Path) -> None:
    clock = _Clock()
    cache = _cache(tmp_path, 300, clock)
    a, b, c = (_put(cache, n, 100) for n in ("a", "b", "c"))
    assert cache.bytes == 300 and cache.evictions == 0
    clock.now += 10  # past the grace of fresh entries
    assert cache.get(a) is not None  # a is now the most recent
    d = _put(cache, "d", 100)
    assert b not in cache and all(k in cache for k in (a, c, d))
    assert cache.bytes == 300 and cache.evictions == 1
    clock.now += 10
    _put(cache, "e", 200)
    assert c not in cache and a not in cache and d in cache
    assert cache.bytes == 300 and cache.evictions == 3
    assert sorted(p.name.split("-", 1)[1] for p in (cache.root / "ds").iterdir()) == ["d", "e"]


def test_pinned_and_recently_handed_out_slices_stay(tmp_path: Path) -> None:
    clock = _Clock()
    cache = _cache(tmp_path, 200, clock)
    a = _put(cache, "a", 100, pin=True)
    b = _put(cache, "b", 100)
    clock.now += 10
    c = _put(cache, "c", 100)  # over capacity: a is pinned, so b (older than c) goes
    assert a in cache and b not in cache and c in cache
    clock.now += 10
    cache.unpin(a)  # handed out: protected for the grace period
    _put(cache, "d", 100)
    assert a in cache and c not in cache
    clock.now += 10
    _put(cache, "e", 100)
    assert a not in cache
    assert cache.bytes <= cache.capacity_bytes


def test_pins_may_overfill_until_released(tmp_path: Path) -> None:
    clock = _Clock()
    cache = _cache(tmp_path, 150, clock)
    a = _put(cache, "a", 100, pin=True)
    b = _put(cache, "b", 100, pin=True)
    assert cache.bytes == 200  # both held by jobs: never evicted
    clock.now += 10
    cache.unpin(a)
    assert a in cache  # grace
    clock.now += 10
    cache.unpin(b)
    assert a not in cache and b in cache and cache.bytes == 100


def test_fresh_download_is_protected_until_pinned(tmp_path: Path) -> None:
    clock = _Clock()
    cache = _cache(tmp_path, 100, clock)
    _put(cache, "a", 100, pin=True)
    b = _put(cache, "b", 100)  # nobody pinned it yet (waiters pin it next): not evicted
    assert b in cache
    assert cache.get(b, pin=True) is not None


def test_committed_files_are_read_only_and_temp_files_hidden(tmp_path: Path) -> None:
    cache = _cache(tmp_path, 1000, _Clock())
    key = SliceKey("ds", "slice-00000.safetensors", "0" * 64)
    tmp = cache.temp_path(key)
    assert tmp.name.startswith(".") and tmp.name.endswith(".part") and tmp.parent == cache.root / "ds"
    tmp.write_bytes(b"x" * 10)
    entry = cache.commit(tmp, key)
    assert not tmp.exists() and entry.path.name == f"{'0' * 64}-slice-00000.safetensors"
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o444
    assert cache.names("ds") == ["slice-00000.safetensors"] and cache.names("other") == []


def test_rebuild_keeps_complete_files_in_lru_order_and_drops_partials(tmp_path: Path) -> None:
    clock = _Clock()
    cache = _cache(tmp_path, 1000, clock)
    a, b = _put(cache, "a", 100), _put(cache, "b", 100)
    os.utime(cache.root / "ds" / b.file_name, (1, 1))  # b used long ago
    partial = cache.temp_path(SliceKey("ds", "c", "1" * 64))
    partial.write_bytes(b"half")
    stranger = cache.root / "ds" / "notes.txt"
    stranger.write_text("not a cache file")
    fresh = SliceCache(cache.root, 150, grace_seconds=0.0, clock=clock)
    kept, discarded = fresh.rebuild()
    assert discarded == 1 and not partial.exists() and stranger.exists()
    assert kept == 1 and a in fresh and b not in fresh  # over capacity: least recently used went
    entry = fresh.get(a)
    assert entry is not None and not entry.verified  # hashed again on first use


def test_slice_larger_than_cache_is_refused(tmp_path: Path) -> None:
    cache = _cache(tmp_path, 100, _Clock())
    with pytest.raises(FetcherError) as err:
        cache.check_fits(SliceKey("ds", "big", "0" * 64), 101)
    assert err.value.reason == "SLICE_LARGER_THAN_CACHE" and "data_fetcher.cache_bytes" in err.value.message
