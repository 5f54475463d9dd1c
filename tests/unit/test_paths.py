"""Path confinement of executor-supplied paths, symlink escapes included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tendril.bridge.errors import BridgeError
from tendril.bridge.paths import confine, relative_to
from tendril.core.errors import ErrorKind


@pytest.fixture
def root(tmp_path: Path) -> Path:
    work = tmp_path / "job-1"
    (work / "artifacts").mkdir(parents=True)
    (work / "data").mkdir()
    return work


def _refused(root: Path, relative: str, within: str = "") -> BridgeError:
    with pytest.raises(BridgeError) as err:
        confine(root, relative, within=within)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT
    assert err.value.reason == "PATH_NOT_CONFINED"
    return err.value


def test_plain_relative_paths_resolve_inside(root: Path) -> None:
    assert confine(root, "a/b.txt") == root.resolve() / "a" / "b.txt"
    assert confine(root, "x.bin", within="artifacts") == root.resolve() / "artifacts" / "x.bin"
    assert confine(root, "./a//b") == root.resolve() / "a" / "b"
    assert relative_to(root, confine(root, "updates/round-1.safetensors")) == "updates/round-1.safetensors"


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a/../b", "..", "a\x00b", ".", "a/.."])
def test_bad_paths_are_refused(root: Path, bad: str) -> None:
    _refused(root, bad)


def test_the_message_says_what_to_do(root: Path) -> None:
    error = _refused(root, "/abs")
    assert "relative to the job's work dir" in error.message


def test_symlink_escaping_the_work_dir_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "escape")
    _refused(root, "escape/file.txt")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    _refused(root, "link.txt")


def test_symlink_inside_the_work_dir_is_allowed(root: Path) -> None:
    os.symlink(root / "data", root / "alias")
    assert confine(root, "alias/s.bin") == root.resolve() / "data" / "s.bin"


def test_within_confines_to_the_subdirectory(root: Path) -> None:
    os.symlink(root / "data", root / "artifacts" / "to-data")
    _refused(root, "to-data/x", within="artifacts")


def test_a_symlinked_subdirectory_that_leaves_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "artifacts").rmdir()
    os.symlink(tmp_path, root / "artifacts")
    _refused(root, "x.bin", within="artifacts")
