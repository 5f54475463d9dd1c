"""A job's results: the folder its executor leaves, kept after the job and read by its owner (no gRPC here).

An executor writes its results under ``results/`` in its work dir (env ``TENDRIL_RESULTS_DIR``,
the bridge's ``GetJob.results_dir``). When the job ends, in any end state, its clean-up
:meth:`ResultsStore.keep` s that folder before the work dir goes:

1. the folder is moved (copied under ``job.keep_work_dirs``) to ``<state_dir>/results/.job-<id>.part/``;
2. everything in it that is not a regular file or a folder (symbolic links, sockets, fifos,
   devices) is removed and named in the manifest's ``skipped``: nothing kept can lead out of
   the folder;
3. the manifest (path, size, sha256 of every file) is written to ``job-<id>.manifest.json``
   (atomically) after the folder was renamed to ``job-<id>/``.

The manifest's presence means the results are complete; a crash between the steps is finished
by the clean-up's next try (it starts again from the ``.part`` folder). Results are deleted by
:meth:`ResultsStore.delete` (the owner's DeleteResults) and :meth:`ResultsStore.prune`
(``job.keep_results_days``, ``job.keep_results_mib``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.job.errors import JobError, JobReason
from tendril_sdk.job import RESULTS_DIR

__all__ = ["CHUNK_BYTES", "RESULTS_DIR", "Manifest", "ResultFile", "ResultsStore", "check_path"]

CHUNK_BYTES = 1024 * 1024  # the most one FetchResult chunk carries
MAX_PATH_BYTES = 4096
PREFIX = "job-"
MANIFEST_SUFFIX = ".manifest.json"
_HASH_BLOCK = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ResultFile:
    """One kept file."""

    path: str  # relative, '/'-separated
    size_bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a job's kept results hold."""

    job_id: str
    files: tuple[ResultFile, ...]
    skipped: tuple[str, ...] = ()
    kept_at: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def file(self, path: str) -> ResultFile | None:
        return next((f for f in self.files if f.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "files": [dataclasses.asdict(f) for f in self.files],
            "skipped": list(self.skipped),
            "kept_at": self.kept_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        files = tuple(ResultFile(str(f["path"]), int(f["size_bytes"]), str(f["sha256"])) for f in data["files"])
        return cls(str(data["job_id"]), files, tuple(str(s) for s in data.get("skipped", ())), float(data["kept_at"]))


def check_path(path: str) -> str:
    """``path`` when it is a relative, normal '/'-separated path inside the results; else BAD_RESULT_PATH."""
    why = ""
    if not path:
        why = "is empty"
    elif len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        why = f"is over {MAX_PATH_BYTES} bytes"
    elif "\0" in path:
        why = "holds a NUL character"
    elif path.startswith("/"):
        why = "is absolute"
    elif any(part in ("", ".", "..") for part in path.split("/")):
        why = "has an empty, '.' or '..' component"
    if why:
        raise JobError(
            ErrorKind.INVALID_ARGUMENT,
            f"path {path[:64]!r} {why}; give a file's path as the job's results manifest lists it (ListResults)",
            reason=JobReason.BAD_RESULT_PATH,
            metadata={"field": "path"},
        )
    return path


def sha256_of(path: Path) -> tuple[int, str]:
    """(size, hex sha256) of a regular file, read without following a symbolic link."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    return "not a regular file"


def sanitize_and_list(folder: Path) -> tuple[list[ResultFile], list[str]]:
    """Remove what is neither a regular file nor a folder under ``folder``; list the files (sorted)."""
    files: list[ResultFile] = []
    skipped: list[str] = []
    for current, dirs, names in os.walk(folder, followlinks=False):
        base = Path(current)
        for name in sorted([*dirs, *names]):
            full = base / name
            relative = full.relative_to(folder).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            if stat.S_ISREG(mode):
                size, digest = sha256_of(full)
                files.append(ResultFile(relative, size, digest))
                continue
            # NOTE: a link could point anywhere on the worker (a fetch would read it): never kept.
            skipped.append(f"{relative}: {_kind(mode)}")
            full.unlink()
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
    files.sort(key=lambda f: f.path)
    return files, sorted(skipped)


def _tree_bytes(folder: Path) -> int:
    total = 0
    for current, _dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(Path(current) / name).st_size
    return total


class ResultsStore:
    """The kept results of ended jobs under ``root`` (``<state_dir>/results``)."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock

    def folder_of(self, job_id: str) -> Path:
        return self.root / f"{PREFIX}{job_id}"

    def manifest_path(self, job_id: str) -> Path:
        return self.root / f"{PREFIX}{job_id}{MANIFEST_SUFFIX}"

    def _part(self, job_id: str) -> Path:
        return self.root / f".{PREFIX}{job_id}.part"

    # -- keeping -------------------------------------------------------------------------

    def keep(self, job_id: str, source: Path, *, copy: bool = False) -> Manifest:
        """Keep ``source`` (a job's results folder) as the job's results; idempotent (see the module)."""
        kept = self.manifest(job_id)
        if kept is not None:
            return kept
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = self._part(job_id)
        if source.is_dir() and not source.is_symlink():
            if part.exists():
                shutil.rmtree(part)
            if copy:
                shutil.copytree(source, part, symlinks=True)
            else:
                shutil.move(source, part)
        elif not part.is_dir():
            part.mkdir(mode=0o700)  # no results folder (the executor removed it): no files
        os.chmod(part, 0o700)
        files, skipped = sanitize_and_list(part)
        manifest = Manifest(job_id, tuple(files), tuple(skipped), self.clock())
        final = self.folder_of(job_id)
        if final.exists():
            shutil.rmtree(final)
        os.replace(part, final)
        tmp = self.root / f".{PREFIX}{job_id}{MANIFEST_SUFFIX}.part"
        with open(tmp, "w") as f:
            json.dump(manifest.to_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path(job_id))
        return manifest

    def manifest(self, job_id: str) -> Manifest | None:
        """The job's manifest, or None when its results are not (or no longer) kept."""
        try:
            data = json.loads(self.manifest_path(job_id).read_text())
        except FileNotFoundError:
            return None
        return Manifest.from_dict(data)

    # -- reading -------------------------------------------------------------------------

    def read(self, manifest: Manifest, path: str, offset: int) -> Iterator[tuple[int, bytes, int]]:
        """(offset, data, size) chunks of one kept file from ``offset``; raises JobError for a bad request."""
        check_path(path)
        entry = manifest.file(path)
        if entry is None:
            raise JobError(
                ErrorKind.NOT_FOUND,
                f"the results of job {manifest.job_id} have no file {path[:64]!r}; ListResults lists them",
                reason=JobReason.RESULT_NOT_FOUND,
                metadata={"job_id": manifest.job_id},
            )
        if offset > entry.size_bytes:
            raise JobError(
                ErrorKind.INVALID_ARGUMENT,
                f"offset {offset} is past the end of {path} ({entry.size_bytes} bytes); resume at most at its size",
                reason=JobReason.BAD_OFFSET,
                metadata={"field": "offset"},
            )
        return self._chunks(manifest.job_id, entry, offset)

    def _chunks(self, job_id: str, entry: ResultFile, offset: int) -> Iterator[tuple[int, bytes, int]]:
        full = self.folder_of(job_id) / entry.path
        try:
            # NOTE: the kept folder holds no links (sanitize_and_list); O_NOFOLLOW guards the file itself.
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError as exc:
            raise results_gone(job_id) from exc
        with os.fdopen(fd, "rb") as f:
            f.seek(offset)
            position = offset
            while True:
                data = f.read(CHUNK_BYTES)
                if not data:
                    if position == offset:
                        yield position, b"", entry.size_bytes  # an empty file, or the offset at its end
                    return
                yield position, data, entry.size_bytes
                position += len(data)

    # -- deleting ------------------------------------------------------------------------

    def delete(self, job_id: str) -> int:
        """Delete a job's kept results (the manifest first); returns the bytes freed."""
        manifest = self.manifest(job_id)
        folder = self.folder_of(job_id)
        freed = _tree_bytes(folder) if folder.exists() else 0
        with contextlib.suppress(FileNotFoundError):
            self.manifest_path(job_id).unlink()
        if folder.exists():
            shutil.rmtree(folder)
        return freed if manifest is not None or freed else 0

    def prune(self, max_age_seconds: float, max_bytes: int) -> list[str]:
        """Delete results older than ``max_age_seconds`` (0: no age limit), then the oldest beyond
        ``max_bytes`` in total (0: no limit); returns the job ids deleted."""
        if not self.root.is_dir():
            return []
        kept: list[tuple[float, str, int]] = []
        for path in self.root.glob(f"{PREFIX}*{MANIFEST_SUFFIX}"):
            job_id = path.name[len(PREFIX) : -len(MANIFEST_SUFFIX)]
            try:
                manifest = self.manifest(job_id)
            except (OSError, ValueError, KeyError):
                manifest = None
            if manifest is not None:
                kept.append((manifest.kept_at, job_id, manifest.total_bytes))
        kept.sort()
        now = self.clock()
        deleted: list[str] = []
        total = sum(size for _, _, size in kept)
        for kept_at, job_id, size in kept:
            too_old = max_age_seconds > 0 and now - kept_at > max_age_seconds
            too_big = max_bytes > 0 and total > max_bytes
            if not (too_old or too_big):
                continue
            self.delete(job_id)
            total -= size
            deleted.append(job_id)
        return deleted


def results_gone(job_id: str) -> JobError:
    return JobError(
        ErrorKind.NOT_FOUND,
        f"the results of job {job_id} were deleted (DeleteResults, or past job.keep_results_days / "
        "job.keep_results_mib on this worker)",
        reason=JobReason.RESULTS_GONE,
        metadata={"job_id": job_id},
    )
