"""Can this worker run a job now? The JobService's check of its disk and its database (no gRPC here).

A job needs its work dir (made at dispatch: folders, job.json, the bridge socket, the
executor's log and files) and its records in ``jobs.db`` under the state dir. When either
folder is full or read-only, or the database is damaged, every dispatch fails; a worker that
kept winning offers then would burn its schedulers' jobs one after the other. So the JobService
checks, every :data:`CHECK_SECONDS`:

* each of ``worker.state_dir`` and ``worker.work_dir`` takes a small file (written, fsynced,
  removed) and has at least ``job.min_free_mib`` free;
* ``jobs.db`` still starts with the SQLite header and answers a read
  (:meth:`JobStore.check`); after a dispatch failed on the disk or the database, also
  ``PRAGMA quick_check`` until it passes.

What fails makes the worker *unready*: the JobService answers NOT_SERVING under its own
health name (the overall "" name and ``tendril.liveness`` stay with the process's liveness,
so the supervisor does not restart a process that is fine), refuses dispatches with
UNAVAILABLE ``CANNOT_RUN_JOBS``, the Arbiter makes no offers and the supervisor withdraws the
worker's registry record. The first check that passes makes it ready again.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

PROBE_NAME = ".tendril-ready-check"
PROBE_BYTES = 4096
CHECK_SECONDS = 1.0
# NOTE: a dispatch failed on the disk or the database (a failure the regular check did not
# see): the worker stays unready at least this long and until a thorough check passes, so it
# does not win the next offer only to fail again at once.
FAILED_DISPATCH_HOLD_SECONDS = 5.0

_ADVICE = {
    errno.ENOSPC: "free disk space there",
    errno.EDQUOT: "free disk space there (a quota is full)",
    errno.EROFS: "its file system is read-only: remount it read-write",
}


def check_folder(folder: Path, min_free_bytes: int) -> str | None:
    """Why ``folder`` cannot hold a job's files now (None: it can)."""
    probe = folder / PROBE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
        stats = os.statvfs(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):  # a read-only file system: nothing was made
            probe.unlink(missing_ok=True)
        advice = _ADVICE.get(exc.errno or 0, "give the worker's user write access to it")
        return f"cannot write {folder}: {exc.strerror or exc}; {advice}"
    free = stats.f_bavail * stats.f_frsize
    if free < min_free_bytes:
        return (
            f"only {free / 2**20:.1f} MiB free under {folder}, less than job.min_free_mib "
            f"({min_free_bytes / 2**20:.0f} MiB); free disk space there"
        )
    return None


def check_folders(folders: list[Path], min_free_bytes: int) -> str | None:
    """The first problem among ``folders`` (each checked once), or None."""
    seen: set[Path] = set()
    for folder in folders:
        if folder in seen:
            continue
        seen.add(folder)
        why = check_folder(folder, min_free_bytes)
        if why is not None:
            return why
    return None
