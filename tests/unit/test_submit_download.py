"""Results into a local folder: resumed after a broken stream, sha256 checked, never half there."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tendril.submit.download import download
from tendril.submit.errors import SubmitError, SubmitReason, WorkerLost
from tendril.submit.ports import FileEntry, Manifest

DATA = b"0123456789" * 10


class Flaky:
    """Sends DATA in 10-byte chunks; breaks after ``break_after`` chunks ``breaks`` times; may corrupt."""

    def __init__(self, *, breaks: int = 0, corrupt: bool = False) -> None:
        self.breaks = breaks
        self.corrupt = corrupt
        self.offsets: list[int] = []

    async def chunks(self, job_id: str, path: str, offset: int) -> AsyncIterator[tuple[int, bytes]]:
        self.offsets.append(offset)
        for at in range(offset, len(DATA), 10):
            if self.breaks and at >= offset + 30:
                self.breaks -= 1
                raise WorkerLost("stream broke")
            yield at, (b"X" * 10 if self.corrupt else DATA[at : at + 10])


def _manifest(path: str = "d/data.bin") -> Manifest:
    return Manifest("j", (FileEntry(path, len(DATA), hashlib.sha256(DATA).hexdigest()),))


async def test_a_broken_stream_resumes_at_its_offset(tmp_path: Path) -> None:
    worker = Flaky(breaks=2)
    out = await download(worker, _manifest(), tmp_path / "out")  # type: ignore[arg-type]
    assert (out / "d" / "data.bin").read_bytes() == DATA
    assert worker.offsets == [0, 30, 60]


async def test_a_corrupt_file_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(SubmitError) as err:
        await download(Flaky(corrupt=True), _manifest(), tmp_path / "out")  # type: ignore[arg-type]
    assert err.value.reason == SubmitReason.RESULTS_CORRUPT
    assert os.listdir(tmp_path) == []


async def test_a_path_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmitError) as err:
        await download(Flaky(), _manifest("../evil"), tmp_path / "out")  # type: ignore[arg-type]
    assert err.value.reason == SubmitReason.RESULTS_CORRUPT
    assert os.listdir(tmp_path) == []
