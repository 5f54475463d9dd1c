"""Files handed between an executor and its bridge, kept from round to round where that pays.

# NOTE: a model-sized file written afresh every round costs the kernel its pages each time
# (allocated, charged, mapped, freed when the file goes). On a 2-core machine, receiving 400 MB
# from a socket into a new file took 0.2 CPU-s, into a file that already holds the pages
# 0.04-0.06 CPU-s; writing 400 MB into a new file 0.1-0.19 CPU-s, in place 0.05 CPU-s. On a file
# system backed by a disk, though, a kept file's pages stay dirty and are written back to the
# disk (every round's Δ and update, 2 × model per worker and round: a version that kept them on
# disk left 0.5-1.1 GiB of dirty pages between the sync bench's rounds instead of 0.04-0.4 GiB),
# where a file deleted within seconds never reaches the disk. So files are kept only on a file system
# held in memory (tmpfs, ramfs: a worker whose `worker.work_dir` is on /dev/shm, say).

A worker offers each job such a place even when its work dir is on a disk: ``handoff/`` in the
work dir, a link to a folder of its own on a file system held in memory (``job.handoff_dir``,
/dev/shm by default), removed with the work dir. An executor puts its hand-off files there
when they fit (:func:`handoff_folder`) and names them by paths under ``handoff/`` as under
``updates/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})
HANDOFF = "handoff"  # in a work dir: the folder held in memory that the worker offers, when it does
UPDATES = "updates"  # in a work dir: where hand-off files go otherwise
# NOTE: what a hand-off of ``nbytes`` (one model-sized file) may take in memory at most: two
# kept Δ files, two kept update files and one more file being replaced. The memory it takes
# from the machine must leave room beside it (MemAvailable counts none of it as available).
HANDOFF_FILES = 5
HANDOFF_HEADROOM_FRACTION = 0.25  # of MemTotal, left available after the hand-off files
_ESCAPED = re.compile(r"\\([0-7]{3})")  # mountinfo writes a space in a path as \040


def memory_backed(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (existing or not) lies on a file system held in memory; False where
    that cannot be told (no ``/proc/self/mountinfo``)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    best, kind = "", ""
    for line in lines:
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        mount = _ESCAPED.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        # (a later line with the same mount point is mounted over the earlier one)
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[fields.index("-", 6) + 1]
    return kind in MEMORY_FILE_SYSTEMS


class Reusable:
    """``count`` files of ``folder`` (``<stem>-<k>``) kept to be written again in place, taken in turn.

    Only when ``folder`` is on a file system held in memory (see the module's NOTE); elsewhere
    :meth:`take` answers None (write a new file). A file is taken only while no other name
    links it (``st_nlink`` 1: whoever was handed a link of it is done), and never twice in a
    row, so that the holder of the last one taken can still read it through a mapping while
    the next is written.
    """

    def __init__(self, folder: Path, stem: str, count: int = 2) -> None:
        if count < 2:
            raise ValueError("reusable files come at least two at a time")
        self.folder = folder
        self.paths = [folder / f"{stem}-{k}" for k in range(count)]
        self._last: int | None = None
        self._memory: bool | None = None

    def take(self) -> Path | None:
        """The next file nothing else links (it may not exist yet), never the one taken last;
        None when every other one is linked elsewhere, or the folder is not held in memory."""
        if self._memory is None:
            self._memory = memory_backed(self.folder)
        if not self._memory:
            return None
        count = len(self.paths)
        start = 0 if self._last is None else self._last + 1
        for i in range(count if self._last is None else count - 1):
            k = (start + i) % count
            try:
                free = os.stat(self.paths[k]).st_nlink == 1
            except FileNotFoundError:
                free = True
            if free:
                self._last = k
                return self.paths[k]
        return None


def _meminfo_bytes() -> dict[str, int]:
    """MemTotal and MemAvailable in bytes; empty where /proc/meminfo cannot be read."""
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    out[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


def handoff_fits(folder: str | os.PathLike[str], nbytes: int) -> bool:
    """Whether ``folder`` is held in memory with room for the hand-off files of a model of
    ``nbytes`` (HANDOFF_FILES of them in the file system, and HANDOFF_HEADROOM_FRACTION of the
    machine's memory still available beside them)."""
    if not os.path.isdir(folder) or not memory_backed(folder):
        return False
    need = HANDOFF_FILES * max(0, nbytes)
    try:
        fs = os.statvfs(folder)
    except OSError:
        return False
    if fs.f_bavail * fs.f_frsize < need:
        return False
    mem = _meminfo_bytes()
    if "MemTotal" not in mem or "MemAvailable" not in mem:
        return False
    return mem["MemAvailable"] >= need + HANDOFF_HEADROOM_FRACTION * mem["MemTotal"]


def handoff_folder(work_dir: str | os.PathLike[str], nbytes: int) -> str:
    """Where an executor in ``work_dir`` puts hand-off files of a model of ``nbytes`` (a Δ, an
    update): ``handoff`` (held in memory) when the worker offers it and they fit, else ``updates``."""
    return HANDOFF if handoff_fits(Path(work_dir) / HANDOFF, nbytes) else UPDATES
