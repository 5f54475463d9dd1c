"""Session set-up shared by every test.

Temporary folders live under a short per-run root (``/tmp/tt-XXXXXX``) instead of pytest's
``/tmp/pytest-of-<user>/pytest-<N>``: a job's bridge socket is ``<work_dir>/job-<id>/bridge.sock``
and a Unix socket path must fit 107 bytes, which pytest's own root (its run counter grows with
every run on a machine) and a long test name can exceed. ``--basetemp`` given on the command
line still wins. The root is removed at the end of a run that passed; a failed run keeps it
for inspection (its path is printed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import HANDOFF_ENV

_ROOT: list[Path] = []
_HANDOFF: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        root = Path(tempfile.mkdtemp(prefix="tt-", dir="/tmp"))
        config.option.basetemp = str(root)
        _ROOT.append(root)
    # NOTE: the workers tests start offer their jobs handoff/ under a folder of this run held in
    # memory (tests.procs.worker_config), removed at its end whatever happened: a worker a test
    # kills leaves its jobs' folders, as a real one does until its next start sweeps them.
    from tendril_sdk.files import memory_backed

    if memory_backed("/dev/shm") and os.access("/dev/shm", os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="tt-handoff-", dir="/dev/shm"))
        os.environ[HANDOFF_ENV] = str(folder)
        _HANDOFF.append(folder)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for folder in _HANDOFF:
        shutil.rmtree(folder, ignore_errors=True)
    for root in _ROOT:
        if exitstatus == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\ntemporary folders of this run: {root}")


@pytest.fixture
def memory_dir() -> Iterator[Path]:
    """A fresh folder on a file system held in memory (/dev/shm), removed after the test;
    the test is skipped where there is none (kept hand-off files need one, tendril_sdk.files)."""
    from tendril_sdk.files import memory_backed

    if not memory_backed("/dev/shm"):
        pytest.skip("/dev/shm is not a file system held in memory here")
    folder = Path(tempfile.mkdtemp(prefix="tt-", dir="/dev/shm"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
