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

import contextlib
import mmap
import os
import re
import shutil
from pathlib import Path

MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})
HANDOFF = "handoff"  # in a work dir: the folder held in memory that the worker offers, when it does
UPDATES = "updates"  # in a work dir: where hand-off files go otherwise
# NOTE: what a hand-off of ``nbytes`` (one fp32 model-sized file) may take in memory at most:
# two kept Δ files and two kept update files, and with bf16 (the largest of the other codecs)
# two kept payloads of half that for each way. The memory it takes from the machine must leave
# room beside it (MemAvailable counts none of it as available).
HANDOFF_FILES = 6
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
        self._maps: dict[Path, tuple[tuple[int, int, int], mmap.mmap]] = {}  # path -> ((dev, inode, size), mapping)
        self._held: set[Path] = set()  # taken with hold, not released yet

    def mapping(self, path: Path, size: int) -> mmap.mmap:
        """A shared, writable mapping of the whole kept file ``path`` (one of :attr:`paths`, of
        ``size`` bytes now), kept from call to call while the file stays the same.

        # NOTE: a mapping made afresh for every use costs a page fault per 4 KiB page of a tmpfs
        # file the first time each is touched (4 KiB pages: shmem_enabled is "never" by
        # default). Measured with 3 processes at once on 2 cores, copying 400 MB into a kept
        # tmpfs file took 0.21 s through a new mapping, 0.085 s with pwrite, 0.048 s through a
        # mapping kept from the round before.
        """
        if path not in self.paths:
            raise ValueError(f"{path} is not one of this object's kept files")
        info = os.stat(path)
        key = (info.st_dev, info.st_ino, size)
        held = self._maps.get(path)
        if held is not None and held[0] == key and info.st_size == size:
            return held[1]
        self._unmap(path)
        if info.st_size != size:
            raise ValueError(f"{path} holds {info.st_size} bytes, not {size}")
        fd = os.open(path, os.O_RDWR)
        try:
            # (its pages mapped at once, not one fault per 4 KiB page at first touch)
            mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        finally:
            os.close(fd)
        self._maps[path] = (key, mapping)
        return mapping

    def fill_from(self, source: Path) -> None:
        """Make every kept file that does not exist yet, or holds another size (and no other name
        links it), a copy of ``source`` (one of them, just written whole), so that the next rounds
        write into files that already hold their pages.

        # NOTE: the pages of a file made afresh cost the kernel one allocation each, and on a
        # virtual machine that hands freed memory back to its host (free page reporting) the
        # host's own fault and zeroing besides: in the sync bench at 400 MB the round that made
        # the second kept files took 5 s where the others took 1.2-1.3 s. Made here, that cost
        # falls in the first round, beside the first file's.
        """
        if source not in self.paths:
            raise ValueError(f"{source} is not one of this object's kept files")
        size = os.stat(source).st_size
        for path in self.paths:
            if path == source:
                continue
            try:
                info = os.stat(path)
                # (kept as it is when it can be written in place, or while another name links it)
                if info.st_size == size or info.st_nlink > 1:
                    continue
            except FileNotFoundError:
                pass
            part = path.with_name(f".{path.name}.part")
            try:
                shutil.copyfile(source, part)
                os.replace(part, path)
            finally:
                part.unlink(missing_ok=True)

    def _unmap(self, path: Path) -> None:
        held = self._maps.pop(path, None)
        if held is not None:
            # (a view still held elsewhere keeps the mapping alive until it goes)
            with contextlib.suppress(BufferError):
                held[1].close()

    def close(self) -> None:
        """Let go of every mapping :meth:`mapping` kept (the files' memory is freed with them)."""
        for path in list(self._maps):
            self._unmap(path)

    def take(self, *, hold: bool = False) -> Path | None:
        """The next file nothing else links (it may not exist yet), never the one taken last nor
        one held; None when every other one is linked elsewhere or held, or the folder is not
        held in memory. ``hold``: it is not taken again until :meth:`release` (for a file that
        no other name links while it is in use, such as a push's encoded payload)."""
        if self._memory is None:
            self._memory = memory_backed(self.folder)
        if not self._memory:
            return None
        count = len(self.paths)
        start = 0 if self._last is None else self._last + 1
        for i in range(count if self._last is None else count - 1):
            k = (start + i) % count
            if self.paths[k] in self._held:
                continue
            try:
                free = os.stat(self.paths[k]).st_nlink == 1
            except FileNotFoundError:
                free = True
            if free:
                self._last = k
                if hold:
                    self._held.add(self.paths[k])
                return self.paths[k]
        return None

    def release(self, path: Path) -> None:
        """A file taken with ``hold`` may be taken again."""
        self._held.discard(path)


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
