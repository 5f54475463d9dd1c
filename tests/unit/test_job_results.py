"""The results core: keeping a results folder (links refused), the manifest, path checks, reads by offset, retention."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tendril.job.errors import JobError, JobReason
from tendril.job.results import CHUNK_BYTES, ResultsStore, check_path


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "work" / "results"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello")
    (src / "sub" / "big.bin").write_bytes(b"x" * (CHUNK_BYTES + 10))
    os.symlink("/etc/passwd", src / "link")
    os.symlink("/etc", src / "dirlink")
    return src


def test_keep_moves_the_folder_drops_links_and_lists_every_file(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "state" / "results", clock=lambda: 100.0)
    manifest = store.keep("j1", _folder(tmp_path))
    assert [(f.path, f.size_bytes) for f in manifest.files] == [("a.txt", 5), ("sub/big.bin", CHUNK_BYTES + 10)]
    assert manifest.file("a.txt").sha256 == hashlib.sha256(b"hello").hexdigest()  # type: ignore[union-attr]
    assert manifest.skipped == ("dirlink: a symbolic link", "link: a symbolic link")
    assert not (tmp_path / "work" / "results").exists()
    assert not (store.folder_of("j1") / "link").exists() and not os.path.lexists(store.folder_of("j1") / "link")
    assert store.manifest("j1") == manifest
    assert store.keep("j1", tmp_path / "nothing") == manifest  # idempotent


def test_keep_copies_under_keep_work_dirs_and_a_missing_folder_gives_no_files(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results")
    src = _folder(tmp_path)
    store.keep("j1", src, copy=True)
    assert (src / "a.txt").exists()
    assert store.keep("j2", tmp_path / "absent").files == ()


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\0b", "x" * 5000])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(JobError) as err:
        check_path(path)
    assert err.value.reason == JobReason.BAD_RESULT_PATH


def test_reads_resume_at_an_offset_and_refuse_what_is_not_listed(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results")
    manifest = store.keep("j1", _folder(tmp_path))
    chunks = list(store.read(manifest, "sub/big.bin", 0))
    assert [(o, len(d)) for o, d, _ in chunks] == [(0, CHUNK_BYTES), (CHUNK_BYTES, 10)]
    assert [(o, d) for o, d, _ in store.read(manifest, "a.txt", 3)] == [(3, b"lo")]
    assert [(o, d) for o, d, _ in store.read(manifest, "a.txt", 5)] == [(5, b"")]
    for path, offset, reason in (("link", 0, JobReason.RESULT_NOT_FOUND), ("a.txt", 6, JobReason.BAD_OFFSET)):
        with pytest.raises(JobError) as err:
            store.read(manifest, path, offset)
        assert err.value.reason == reason
    store.delete("j1")
    assert store.manifest("j1") is None and not store.folder_of("j1").exists()


def test_prune_deletes_by_age_then_the_oldest_beyond_the_size(tmp_path: Path) -> None:
    now = [0.0]
    store = ResultsStore(tmp_path / "results", clock=lambda: now[0])
    for i, job in enumerate(("old", "mid", "new")):
        now[0] = i * 100.0
        src = tmp_path / job
        src.mkdir()
        (src / "f").write_bytes(b"y" * 1000)
        store.keep(job, src)
    now[0] = 250.0
    assert store.prune(200.0, 0) == ["old"]
    assert store.prune(0, 1500) == ["mid"]
    assert store.manifest("new") is not None
