"""Compare a freshly generated tree with the checked-in one (used by the stub drift checks)."""

from __future__ import annotations

import filecmp
import pathlib


def _files(root: pathlib.Path) -> set[pathlib.Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def tree_drift(fresh: pathlib.Path, checked_in: pathlib.Path, label: str = "") -> list[str]:
    """Lines naming every file missing from, stale in, or different in ``checked_in``.

    ``label`` is put before each path (e.g. "src/" when comparing one part of a package).
    """
    fresh_files = _files(fresh) if fresh.exists() else set()
    old_files = _files(checked_in) if checked_in.exists() else set()
    drift = [f"missing: {label}{f}" for f in sorted(fresh_files - old_files)]
    drift += [f"stale: {label}{f}" for f in sorted(old_files - fresh_files)]
    drift += [
        f"differs: {label}{f}"
        for f in sorted(fresh_files & old_files)
        if not filecmp.cmp(fresh / f, checked_in / f, shallow=False)
    ]
    return drift
