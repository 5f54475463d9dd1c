"""Writing a file so that it appears complete or not at all (no gRPC here)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def part_path(dest: Path) -> Path:
    """A hidden temporary sibling of ``dest`` (same directory, so a rename is atomic)."""
    return dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")


@contextlib.contextmanager
def landing(dest: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``dest``, on failure removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
