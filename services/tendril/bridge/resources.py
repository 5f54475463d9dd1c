"""The worker's cache of fetched resources (no gRPC here): one file per sha256, shared by the
jobs of the worker, so that a second job asking for the same checkpoint does not download it again.

It lives beside the DataFetcher's slice cache, in ``<state_dir>/cache/.resources/<sha256>``
(a hidden folder, which the slice cache never indexes), and is bounded like it by
``data_fetcher.cache_bytes``: least recently used files go first. Files are read-only; a job
gets a hard link to one (a copy across file systems). Only a FetchResource that names the
sha256 it expects is cached; a cached file is hashed again before each use, and a damaged
one is removed and fetched anew.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from tendril.bridge.files import landing, part_path
from tendril.core.files import file_sha256
from tendril.core.logs import get_logger

log = get_logger("tendril.bridge.resources")

FOLDER = ".resources"  # under the DataFetcher's cache root


def place(source: Path, target: Path) -> None:
    """A read-only view of ``source`` at ``target``: a hard link, else a read-only copy."""
    with landing(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)


class ResourceCache:
    """Content-addressed files under ``root``, at most ``capacity_bytes`` in all (blocking calls:
    run them in a thread)."""

    def __init__(self, root: Path, capacity_bytes: int) -> None:
        self.root = root
        self.capacity_bytes = capacity_bytes

    def _path(self, sha256: str) -> Path:
        return self.root / sha256.lower()

    def take(self, sha256: str, target: Path) -> int | None:
        """Place the cached file of ``sha256`` at ``target`` and return its size; None on a miss.
        A cached file whose bytes no longer hash to ``sha256`` is removed (a miss)."""
        path = self._path(sha256)
        try:
            if file_sha256(path) != sha256.lower():
                log.warning("resource.damaged", sha256=sha256, path=str(path))
                path.unlink(missing_ok=True)
                return None
            os.utime(path)  # most recently used
            place(path, target)
            return path.stat().st_size
        except FileNotFoundError:
            return None

    def keep(self, sha256: str, source: Path) -> None:
        """Add the verified download ``source`` (made read-only) to the cache, then evict to fit."""
        size = source.stat().st_size
        if size > self.capacity_bytes:
            return  # NOTE: bigger than the whole cache: not kept, the job still has its copy
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(source, 0o444)  # the job's file and the cache's share an inode: nobody writes it
        tmp = part_path(self._path(sha256))
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
                os.chmod(tmp, 0o444)
            os.replace(tmp, self._path(sha256))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.evict(keep=sha256.lower())

    def evict(self, *, keep: str = "") -> None:
        """Remove least recently used files until the cache fits (never ``keep``)."""
        files = []
        for path in self.root.iterdir():
            if path.name.endswith(".part") or not path.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.capacity_bytes:
                break
            if path.name == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            log.info("resource.evicted", sha256=path.name, bytes=size)
