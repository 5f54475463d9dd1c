"""scripts/buf_breaking.sh in a scratch git repository: skips, passes additive changes, fails breaks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).parent / "buf"

PROTO = """syntax = "proto3";

package tendril.demo.v1;

// Thing is a demo message.
message Thing {
  // Name.
  string name = 1;
%s}
"""

pytestmark = pytest.mark.skipif(not BUF.exists(), reason=f"buf is not installed next to {sys.executable}")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _write(repo: Path, fields: str) -> None:
    (repo / "protos" / "tendril" / "demo" / "v1" / "demo.proto").write_text(PROTO % fields)


def _commit(repo: Path, fields: str) -> None:
    _write(repo, fields)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "change")


def _check(repo: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "BUF_AGAINST"}
    return subprocess.run(
        ["bash", str(repo / "scripts" / "buf_breaking.sh")],
        env={**clean, "BUF": str(BUF), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "buf_breaking.sh", tmp_path / "scripts")
    (tmp_path / "protos" / "tendril" / "demo" / "v1").mkdir(parents=True)
    shutil.copy(REPO / "protos" / "buf.yaml", tmp_path / "protos")
    _git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def test_first_commit_is_skipped_then_additive_passes_and_breaks_fail(repo: Path) -> None:
    _commit(repo, "")
    first = _check(repo)
    assert first.returncode == 0 and "skipped: no commit HEAD~1" in first.stdout, first.stderr

    _commit(repo, "  // Size.\n  uint64 size = 2;\n")
    added = _check(repo)
    assert added.returncode == 0 and "compatible with HEAD~1" in added.stdout, added.stdout + added.stderr

    _commit(repo, "  // Size.\n  string size = 2;\n")
    changed = _check(repo)
    assert changed.returncode == 1, changed.stdout
    assert "changed type" in changed.stdout and "breaks compatibility with HEAD~1" in changed.stderr

    # The last good commit, named explicitly, against a working tree that also drops a field.
    _write(repo, "")
    dropped = _check(repo)
    assert dropped.returncode == 1 and "breaks compatibility with HEAD " in dropped.stderr, dropped.stdout
    assert "deleted" in dropped.stdout.lower()
    assert _check(repo, BUF_AGAINST="HEAD~2").returncode == 0, "no field 2 in the first commit: nothing broken"


def test_a_base_without_protos_is_skipped(repo: Path) -> None:
    (repo / "README").write_text("before protos existed\n")
    shutil.move(repo / "protos", repo / "later")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "no protos yet")
    shutil.move(repo / "later", repo / "protos")
    _commit(repo, "")
    skipped = _check(repo)
    assert skipped.returncode == 0 and "has no protos/buf.yaml" in skipped.stdout, skipped.stderr
