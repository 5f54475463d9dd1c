"""Which text files a data set is made of, in a deterministic order.

``collect_files`` walks a folder (sorted by relative POSIX path, hidden entries and symlinked
folders skipped) so the same folder always gives the same data set. ``stdlib_corpus`` is the
demo corpus: the ``.py`` sources of the running interpreter's standard library, real text on
every machine with nothing to download.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from tendril.core.errors import ErrorKind
from tendril.data_node.errors import DataNodeError, DatasetReason

STDLIB_SOURCE = "@stdlib"  # the SRC value of `tendril data prepare` that means stdlib_corpus()
_NOT_STDLIB = {"site-packages", "dist-packages", "__pycache__"}


def collect_files(src: Path, suffixes: Sequence[str] = (), *, skip_dirs: frozenset[str] = frozenset()) -> list[Path]:
    """Regular files under ``src`` (or ``src`` itself), optionally only those ending in ``suffixes``."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DataNodeError(
            ErrorKind.NOT_FOUND,
            f"source {src} is neither a folder nor a file; pass a folder of text files (or {STDLIB_SOURCE}).",
            reason=DatasetReason.SOURCE_NOT_FOUND,
        )
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip_dirs]
        for name in files:
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            if suffixes and not name.endswith(tuple(suffixes)):
                continue
            found.append((path.relative_to(src).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_corpus() -> list[Path]:
    """The ``.py`` files of this interpreter's standard library (no site-packages), sorted."""
    return collect_files(stdlib_root(), (".py",), skip_dirs=frozenset(_NOT_STDLIB))
