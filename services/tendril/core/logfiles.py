"""Keeping log files in bounds: size-based rotation of a file others write, and pruning by age and size.

* :func:`rotate` — copy-then-truncate rotation (``<name>.log`` → ``<name>.log.1`` … ``.N``) of a
  file that another process keeps open and writes with ``O_APPEND`` (a service's log: the
  supervisor opened it and handed it to the service as its stdout and stderr). The writer
  never reopens anything: after the truncation its next write lands at the start of the
  emptied file. Only what is written in the instant between the last copy and the truncation
  can be lost (logrotate's ``copytruncate`` has the same window).
* :func:`prune` — delete the files of a folder that match a pattern and are older than a
  number of days, then the oldest while they take more than a number of bytes together.

Both only log what fails (a log that cannot be rotated must not stop a worker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path

from tendril.core.logs import get_logger

log = get_logger("tendril.logfiles")

COPY_PASSES = 4  # copies of what was appended meanwhile before the truncation


def backup(path: Path, index: int) -> Path:
    """``<path>.<index>``: the index-th newest rotated copy."""
    return path.with_name(f"{path.name}.{index}")


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` when it holds ``max_bytes`` or more; returns whether it did.

    ``backups`` copies are kept (``.1`` the newest); 0 keeps none (the file is only emptied).
    ``max_bytes`` 0 never rotates.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if not max_bytes or size < max_bytes:
        return False
    try:
        if backups:
            for index in range(backups - 1, 0, -1):
                older = backup(path, index)
                if older.exists():
                    os.replace(older, backup(path, index + 1))
            _copy_then_truncate(path, backup(path, 1))
        else:
            with open(path, "r+b") as f:
                f.truncate(0)
    except OSError as exc:
        log.warning("log.rotate_failed", path=str(path), error=repr(exc))
        return False
    log.info("log.rotated", path=str(path), bytes=size, backups=backups)
    return True


def _copy_then_truncate(path: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.part")
    with open(path, "r+b") as source, open(tmp, "wb") as out:
        # NOTE: the writer keeps appending while this copies: copy until a pass finds nothing
        # new (or a few passes), then truncate at once.
        for _ in range(COPY_PASSES):
            shutil.copyfileobj(source, out)
            if source.tell() >= os.fstat(source.fileno()).st_size:
                break
        source.truncate(0)  # at once: what the writer adds from here on starts the emptied file
    os.replace(tmp, target)


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What one :func:`prune` removed."""

    files: int = 0
    bytes: int = 0


def prune(
    folder: Path, pattern: str, *, max_age_seconds: float, max_total_bytes: int, now: float | None = None
) -> Pruned:
    """Delete the files ``folder/pattern`` (hidden files never) older than ``max_age_seconds``, then
    the oldest while the rest take more than ``max_total_bytes``; 0 turns either rule off."""
    now = time.time() if now is None else now
    files = []
    for path in folder.glob(pattern) if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            if path.name.startswith(".") or not path.is_file():
                continue
            info = path.stat()
            files.append((info.st_mtime, info.st_size, path))
    files.sort()  # oldest first
    total = sum(size for _, size, _ in files)
    removed = Pruned()
    for mtime, size, path in files:
        too_old = max_age_seconds > 0 and now - mtime > max_age_seconds
        too_much = max_total_bytes > 0 and total > max_total_bytes
        if not (too_old or too_much):
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("log.prune_failed", path=str(path), error=repr(exc))
            continue
        total -= size
        removed = Pruned(removed.files + 1, removed.bytes + size)
    if removed.files:
        log.info("log.pruned", folder=str(folder), pattern=pattern, files=removed.files, bytes=removed.bytes)
    return removed
