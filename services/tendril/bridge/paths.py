"""Path confinement: executor-supplied paths stay inside the job's work dir (no gRPC here).

Executors name files by paths relative to their work dir. A path is refused when it is empty,
absolute, holds a NUL byte or a ``..`` component, or when it resolves — following every
symbolic link that exists — to somewhere outside the allowed directory.

NOTE: the check resolves symlinks at call time. An executor could swap a directory for a
symlink between the check and the write; it runs as the same user as the bridge, so that
only lets it write where it could write anyway. The check exists so that the bridge never
acts as a confused deputy for a path the executor got from someone else (a job config).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tendril.bridge.errors import BridgeError
from tendril.core.errors import ErrorKind
from tendril_sdk.reasons import BridgeReason


def _refuse(what: str, relative: str, why: str) -> BridgeError:
    return BridgeError(
        ErrorKind.INVALID_ARGUMENT,
        f"{what} {relative!r} {why}; give a path relative to the job's work dir, without '..'",
        reason=BridgeReason.PATH_NOT_CONFINED,
        metadata={"path": relative[:200]},
    )


def confine(root: Path, relative: str, *, within: str = "", what: str = "path") -> Path:
    """The real path of ``relative`` inside ``root`` (optionally inside ``root/within``).

    ``relative`` is taken relative to ``root/within``. Raises BridgeError INVALID_ARGUMENT
    when it is empty, absolute, has ``..`` or a NUL byte, names the directory itself, or
    leaves the directory through a symlink.
    """
    if not relative:
        raise _refuse(what, relative, "is empty")
    if "\x00" in relative:
        raise _refuse(what, relative, "contains a NUL byte")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise _refuse(what, relative, "is absolute")
    if ".." in pure.parts:
        raise _refuse(what, relative, "contains '..'")
    root_real = root.resolve()
    base = (root_real / within).resolve() if within else root_real
    if base != root_real and root_real not in base.parents:
        raise _refuse(what, relative, f"would be written under {within}/, which leaves the work dir")
    real = base.joinpath(*pure.parts).resolve(strict=False)
    if real == base:
        raise _refuse(what, relative, "names the directory itself, not a file in it")
    if base not in real.parents:
        raise _refuse(what, relative, f"leaves {within or 'the work dir'} through a symbolic link")
    return real


def relative_to(root: Path, path: Path) -> str:
    """``path`` (inside ``root``) as the relative POSIX path an executor uses."""
    return path.relative_to(root.resolve()).as_posix()
