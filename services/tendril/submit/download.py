"""A job's results into a local folder (no gRPC here): chunked, resumed by offset, every file
checked against the manifest's size and sha256, written atomically.

The files go into ``.<name>.part-<random>/`` beside the target folder, each fsynced; the folder
is renamed to its name only once every file is in and checked, so a folder of that name is
always complete and a partial download never looks like one (it is removed on failure; one left
by a killed process keeps its ``.part-`` name).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tendril.core.errors import ErrorKind
from tendril.submit.errors import SubmitError, SubmitReason, WorkerLost
from tendril.submit.ports import FileEntry, Manifest, Worker

STALLS_ALLOWED = 3  # broken streams in a row without a byte of progress before the worker counts as lost
FULL_TRIES = 2  # a file whose sha256 differs is fetched once more from its start


def local_path(root: Path, relative: str) -> Path:
    """``root``/``relative`` for a manifest path; RESULTS_CORRUPT when it would leave ``root``."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or any(part in ("", ".", "..") for part in relative.split("/")):
        raise SubmitError(
            ErrorKind.DATA_LOSS,
            f"the worker's manifest lists the path {relative[:64]!r}, which is not a plain relative path",
            reason=SubmitReason.RESULTS_CORRUPT,
        )
    return root.joinpath(*pure.parts)


def _create(target: Path) -> BinaryIO:
    """``target`` opened for writing, emptied (a file's second try starts over)."""
    return open(target, "wb")  # NOTE: a local file, small writes: the event loop barely waits


async def _fetch_once(worker: Worker, job_id: str, entry: FileEntry, target: Path) -> str:
    """Fetch one file into ``target`` (resuming broken streams); returns its hex sha256."""
    digest = hashlib.sha256()
    offset = 0
    stalls = 0
    with _create(target) as out:
        while True:
            start = offset
            try:
                async for at, data in worker.chunks(job_id, entry.path, offset):
                    if at != offset:
                        raise SubmitError(
                            ErrorKind.DATA_LOSS,
                            f"{entry.path}: the worker sent bytes at offset {at}, expected {offset}",
                            reason=SubmitReason.RESULTS_CORRUPT,
                        )
                    out.write(data)
                    digest.update(data)
                    offset += len(data)
                break
            except WorkerLost:
                stalls = 0 if offset > start else stalls + 1
                if stalls >= STALLS_ALLOWED:
                    raise
        out.flush()
        os.fsync(out.fileno())
    if offset != entry.size_bytes:
        return f"size {offset} (manifest: {entry.size_bytes})"
    return digest.hexdigest()


async def fetch_file(worker: Worker, job_id: str, entry: FileEntry, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    got = ""
    for _ in range(FULL_TRIES):
        got = await _fetch_once(worker, job_id, entry, target)
        if got == entry.sha256:
            return
    raise SubmitError(
        ErrorKind.DATA_LOSS,
        f"{entry.path} of job {job_id} arrived with sha256 {got}, the manifest lists {entry.sha256} ({FULL_TRIES} "
        "tries)",
        reason=SubmitReason.RESULTS_CORRUPT,
    )


def _move_into_place(part: Path, out: Path) -> None:
    if os.path.lexists(out):  # NOTE: rename would replace an empty folder: never overwrite anything
        raise FileExistsError(f"{out} appeared while the results were fetched")
    os.rename(part, out)


async def download(worker: Worker, manifest: Manifest, out: Path) -> Path:
    """Every file of ``manifest`` into the new folder ``out`` (which must not exist); returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.parent / f".{out.name}.part-{uuid.uuid4().hex[:8]}"
    part.mkdir(mode=0o700)
    try:
        for entry in manifest.files:
            await fetch_file(worker, manifest.job_id, entry, local_path(part, entry.path))
        _move_into_place(part, out)
        with contextlib.suppress(OSError):  # NOTE: the rename reaches the disk with its directory
            fd = os.open(out.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return out
