"""Unpacking a checkpoint archive (.tar, .tar.gz, .tgz, .zip) without letting it write outside its folder."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from tendril_models.errors import ModelError, ModelReason

__all__ = ["ARCHIVE_SUFFIXES", "checkpoint_root", "is_archive", "unpack"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(name: str) -> bool:
    """Whether ``name`` (a file name or URI path) ends like an archive this module unpacks."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _bad(path: Path, why: str) -> ModelError:
    return ModelError(f"checkpoint archive {path.name}: {why}", reason=ModelReason.BAD_ARCHIVE)


def _safe_member(path: Path, name: str) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise _bad(path, f"member {name[:200]!r} would land outside the folder it is unpacked into; refused")


def _unzip(path: Path, into: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            _safe_member(path, info.filename)
            # NOTE: a zip member whose mode says symlink would be written as a file holding the
            # link's target; refused all the same, as in tar archives.
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise _bad(path, f"member {info.filename[:200]!r} is a symbolic link; refused")
        archive.extractall(into)


def _untar(path: Path, into: Path) -> None:
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            _safe_member(path, member.name)
            if not (member.isfile() or member.isdir()):
                raise _bad(path, f"member {member.name[:200]!r} is not a plain file or folder (a link?); refused")
        # NOTE: the "data" filter (PEP 706) checks every member again as it is written, and drops
        # owners and modes that would make files executable or shared.
        archive.extractall(into, filter="data")


def unpack(path: Path, into: Path) -> Path:
    """Unpack the archive ``path`` into ``into`` and return the checkpoint's folder in it.

    A directory ``path`` is returned as it is. Members with absolute paths, ``..`` parts or
    links are refused with ModelError(BAD_ARCHIVE), and nothing is left in ``into`` then.
    """
    if path.is_dir():
        return path
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist", reason=ModelReason.CHECKPOINT_NOT_FOUND)
    if not is_archive(path.name):
        raise _bad(path, f"is not an archive; name it with one of {', '.join(ARCHIVE_SUFFIXES)}")
    into.mkdir(parents=True, exist_ok=True)
    try:
        if path.name.lower().endswith(".zip"):
            _unzip(path, into)
        else:
            _untar(path, into)
    except ModelError:
        shutil.rmtree(into, ignore_errors=True)
        raise
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        shutil.rmtree(into, ignore_errors=True)
        raise _bad(path, f"cannot be unpacked: {exc}") from exc
    return checkpoint_root(into)


def checkpoint_root(folder: Path) -> Path:
    """``folder``, or its one sub-folder when the archive wrapped the checkpoint in one (``model/config.json``)."""
    if (folder / "config.json").exists():
        return folder
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
