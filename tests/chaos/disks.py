"""Disks for chaos tests: a tmpfs of a given size, filled up or made read-only for a while.

They need root with CAP_SYS_ADMIN (mount); a test skips, naming the reason, where mounts are
refused. Everything mounted is unmounted when the block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = ".chaos-filler"


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "256m") mounted at ``where`` for the block."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        # NOTE: a read-only bind on top (read_only below) goes with a lazy unmount too.
        for _ in range(3):
            if _run("umount", "-l", str(where)).returncode != 0:
                break


def fill(disk: Path) -> Path:
    """Write a filler file on ``disk`` until it is full (ENOSPC); returns it (unlink it to free)."""
    path = disk / FILLER
    with contextlib.suppress(OSError), open(path, "wb") as f:
        block = b"\0" * (1 << 20)
        while True:
            f.write(block)
            f.flush()
    with contextlib.suppress(OSError), open(path, "ab") as f:  # the last bytes
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return path


@contextlib.contextmanager
def full(disk: Path) -> Iterator[None]:
    """``disk`` full for the block (the filler removed at its end)."""
    path = fill(disk)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def make_read_only(folder: Path) -> None:
    """Make ``folder`` read-only now: a read-only bind mount of it over itself.

    NOTE: ``mount -o remount,ro`` of a file system with files open for writing (the services'
    logs and databases) is refused (EBUSY); a read-only bind on top makes every new write
    under ``folder`` fail with EROFS (files opened before keep working), which is what a
    service meets when its state or work dir turns read-only.
    """
    bound = _run("mount", "--bind", str(folder), str(folder))
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.decode().strip()}")
    ro = _run("mount", "-o", "remount,bind,ro", str(folder))
    if ro.returncode != 0:
        _run("umount", str(folder))
        pytest.skip(f"cannot make a bind mount read-only here: {ro.stderr.decode().strip()}")


def make_writable(folder: Path) -> None:
    """Undo :func:`make_read_only`."""
    done = _run("umount", str(folder))
    assert done.returncode == 0, done.stderr.decode()


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    make_read_only(folder)
    try:
        yield
    finally:
        make_writable(folder)


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize
