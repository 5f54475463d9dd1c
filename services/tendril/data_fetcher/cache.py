"""The slice cache: verified slice files on disk, bounded in bytes, evicted least recently used.

Layout: ``<root>/<dataset_id>/<sha256>-<slice_name>`` (read-only files). A download is written
to a hidden ``.<name>.<random>.part`` file beside it and renamed into place only once it
verified, so a visible cache file is always complete. At start :meth:`SliceCache.rebuild`
indexes the files on disk (oldest modification first, since every use touches the file) and
deletes leftover ``.part`` files; those complete files are hashed again on their first use
(see ``verified``).

Eviction never removes a slice that is *pinned* (a job holds it: queued for the job or the
one it is working on) or that was released less than ``grace_seconds`` ago (just handed out:
the job bridge links it into the job's work dir right after NextSlice returns).

# NOTE: pinned slices are never evicted, so the cache can exceed its capacity while jobs hold
# more than fits; the excess is evicted as soon as they release it. Waiting for space instead
# could deadlock jobs that each hold slices.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from tendril.core.errors import ErrorKind
from tendril.core.ids import is_valid_name
from tendril.core.logs import get_logger
from tendril.data_fetcher.errors import FetcherError, FetcherReason
from tendril.data_fetcher.model import SliceKey

log = get_logger("tendril.data_fetcher.cache")

PART_SUFFIX = ".part"
HANDOUT_GRACE_SECONDS = 10.0
_CACHE_FILE = re.compile(r"^([0-9a-f]{64})-(.+)$")


@dataclasses.dataclass
class CacheEntry:
    """One cached slice."""

    key: SliceKey
    path: Path
    size: int
    verified: bool  # hashed by this process (downloaded now, or checked after a restart)
    pins: int = 0
    protected_until: float = 0.0


class SliceCache:
    """An LRU index over the slice files under ``root``; all methods run on one event loop."""

    def __init__(
        self,
        root: Path,
        capacity_bytes: int,
        *,
        grace_seconds: float = HANDOUT_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"cache capacity must be positive, got {capacity_bytes}")
        self.root = root
        self.capacity_bytes = capacity_bytes
        self.grace_seconds = grace_seconds
        self._clock = clock
        self._entries: collections.OrderedDict[SliceKey, CacheEntry] = collections.OrderedDict()
        self.bytes = 0
        self.evictions = 0
        root.mkdir(parents=True, exist_ok=True)

    # -- start --------------------------------------------------------------------------

    def rebuild(self) -> tuple[int, int]:
        """Index the complete files on disk, delete partial ones; returns (kept, discarded)."""
        found: list[tuple[float, CacheEntry]] = []
        discarded = 0
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and is_valid_name(p.name)):
            for path in sorted(folder.iterdir()):
                if path.name.endswith(PART_SUFFIX) and path.is_file():
                    path.unlink(missing_ok=True)
                    discarded += 1
                    continue
                match = _CACHE_FILE.match(path.name)
                if not match or not path.is_file() or not is_valid_name(match.group(2)):
                    continue  # not ours: leave it alone, never index it
                st = path.stat()
                key = SliceKey(folder.name, match.group(2), match.group(1))
                found.append((st.st_mtime, CacheEntry(key, path, st.st_size, verified=False)))
        self._entries.clear()
        self.bytes = 0
        for _, entry in sorted(found, key=lambda item: item[0]):
            self._entries[entry.key] = entry
            self.bytes += entry.size
        self.evict()
        log.info("cache.rebuilt", root=str(self.root), slices=len(self._entries), bytes=self.bytes, discarded=discarded)
        return len(self._entries), discarded

    # -- lookups ------------------------------------------------------------------------

    def __contains__(self, key: SliceKey) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: SliceKey, *, pin: bool = False) -> CacheEntry | None:
        """The entry for ``key`` (now the most recently used), pinned when asked."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        # NOTE: the modification time carries the LRU order across restarts.
        try:
            os.utime(entry.path, follow_symlinks=False)
        except FileNotFoundError:
            self._drop(entry)  # someone removed the file by hand: forget it
            return None
        if pin:
            entry.pins += 1
        return entry

    def names(self, dataset_id: str) -> list[str]:
        """Slice names of ``dataset_id`` in the cache (what a scheduler may prefer to assign)."""
        return sorted({k.slice_name for k in self._entries if k.dataset_id == dataset_id})

    def check_fits(self, key: SliceKey, size: int) -> None:
        if size > self.capacity_bytes:
            raise FetcherError(
                ErrorKind.FAILED_PRECONDITION,
                f"slice {key.slice_name} of data set {key.dataset_id} has {size} bytes, more than the whole "
                f"slice cache ({self.capacity_bytes} bytes); raise data_fetcher.cache_bytes",
                reason=FetcherReason.SLICE_LARGER_THAN_CACHE,
                metadata={"size_bytes": str(size), "cache_bytes": str(self.capacity_bytes)},
            )

    # -- writes -------------------------------------------------------------------------

    def temp_path(self, key: SliceKey) -> Path:
        """A fresh hidden file name for downloading ``key`` (same folder, so rename is atomic)."""
        folder = self.root / key.dataset_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{key.file_name}.{secrets.token_hex(4)}{PART_SUFFIX}"

    def commit(self, tmp: Path, key: SliceKey, *, pin: bool = False) -> CacheEntry:
        """Make the verified download ``tmp`` the cache file of ``key``."""
        final = self.root / key.dataset_id / key.file_name
        os.chmod(tmp, 0o444)  # executors get hard links to it: nobody may write through them
        os.replace(tmp, final)
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        size = final.stat().st_size
        # NOTE: a fresh entry is protected for the grace period so that jobs that waited for
        # the same download can pin it before any eviction runs.
        entry = CacheEntry(key, final, size, verified=True, protected_until=self._clock() + self.grace_seconds)
        if old is not None:
            entry.pins = old.pins
        if pin:
            entry.pins += 1
        self._entries[key] = entry
        self.bytes += size
        self.evict()
        return entry

    def mark_verified(self, key: SliceKey) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.verified = True

    def remove(self, key: SliceKey) -> None:
        """Delete a slice that turned out damaged (whatever its pins)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._drop(entry)

    # -- pins and eviction --------------------------------------------------------------

    def unpin(self, key: SliceKey) -> None:
        """A job let go of ``key``; it stays protected for the grace period."""
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.pins = max(0, entry.pins - 1)
        entry.protected_until = max(entry.protected_until, self._clock() + self.grace_seconds)
        self.evict()

    def evict(self) -> list[SliceKey]:
        """Remove least recently used, unprotected slices until the cache fits its capacity."""
        evicted: list[SliceKey] = []
        if self.bytes <= self.capacity_bytes:
            return evicted
        now = self._clock()
        for entry in list(self._entries.values()):
            if self.bytes <= self.capacity_bytes:
                break
            if entry.pins > 0 or entry.protected_until > now:
                continue
            self._drop(entry)
            self.evictions += 1
            evicted.append(entry.key)
        if evicted:
            log.debug("cache.evicted", slices=len(evicted), bytes=self.bytes, capacity=self.capacity_bytes)
        return evicted

    def _drop(self, entry: CacheEntry) -> None:
        self._entries.pop(entry.key, None)
        self.bytes -= entry.size
        entry.path.unlink(missing_ok=True)
