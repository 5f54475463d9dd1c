"""handoff/: the folder held in memory a worker offers each job (tendril.job.workdir.WorkDirs)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tendril.job.workdir import WorkDirs
from tendril_sdk.files import memory_backed
from tendril_sdk.job import ExecutorRef, JobDescriptor


def _job(workdirs: WorkDirs, job_id: str) -> JobDescriptor:
    work_dir = workdirs.path_of(job_id)
    return JobDescriptor(
        job_id=job_id,
        worker_id="w",
        lease_id="L1",
        owner_id="s",
        executor=ExecutorRef("t", "x"),
        config={},
        work_dir=work_dir,
        socket_path=work_dir / "bridge.sock",
    )


def _workdirs(tmp_path: Path, handoff_dir: Path | None, *, keep: bool = False) -> WorkDirs:
    return WorkDirs(tmp_path / "work", tmp_path / "logs", worker_id="w", keep=keep, handoff_dir=handoff_dir)


def test_a_job_gets_its_own_folder_in_memory_and_it_goes_with_the_job(tmp_path: Path, memory_dir: Path) -> None:
    workdirs = _workdirs(tmp_path, memory_dir)
    assert workdirs.handoff_root is not None and workdirs.handoff_root.parent == memory_dir
    work = workdirs.create(_job(workdirs, "j1"))
    link, target = work / "handoff", workdirs.handoff_of(work)
    assert target is not None and link.is_symlink() and link.resolve() == target.resolve()
    assert memory_backed(link) and stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE(workdirs.handoff_root.stat().st_mode) == 0o700
    (link / "delta-00000.safetensors").write_bytes(b"x" * 4096)
    other = workdirs.create(_job(workdirs, "j2"))
    assert workdirs.clean_up("j1", work)
    assert not work.exists() and not target.exists()
    assert workdirs.handoff_root.is_dir(), "j2's folder is still there"
    workdirs.discard(other)  # (a job whose dispatch failed)
    assert not other.exists() and not workdirs.handoff_root.exists(), "the folder above goes with the last job"


def test_a_kept_work_dir_keeps_no_memory(tmp_path: Path, memory_dir: Path) -> None:
    workdirs = _workdirs(tmp_path, memory_dir, keep=True)
    work = workdirs.create(_job(workdirs, "j1"))
    target = workdirs.handoff_of(work)
    assert target is not None and target.is_dir()
    assert workdirs.clean_up("j1", work)
    assert work.is_dir() and not target.exists() and not os.path.lexists(work / "handoff")


def test_no_offer_for_a_container_or_a_folder_not_in_memory(tmp_path: Path, memory_dir: Path) -> None:
    workdirs = _workdirs(tmp_path, memory_dir)
    work = workdirs.create(_job(workdirs, "c1"), handoff=False)  # a container mounts the work dir only
    assert not os.path.lexists(work / "handoff") and (work / "updates").is_dir()
    if memory_backed(tmp_path):
        pytest.skip("the temporary folder is itself held in memory here")
    disk = _workdirs(tmp_path / "disk", tmp_path)
    assert disk.handoff_root is None
    assert not os.path.lexists(disk.create(_job(disk, "d1")) / "handoff")
    assert _workdirs(tmp_path / "off", None).handoff_root is None


def test_a_folder_of_that_name_open_to_others_is_not_used(tmp_path: Path, memory_dir: Path) -> None:
    workdirs = _workdirs(tmp_path, memory_dir)
    assert workdirs.handoff_root is not None
    workdirs.handoff_root.mkdir(mode=0o777)
    os.chmod(workdirs.handoff_root, 0o777)  # (made first by someone else, say)
    work = workdirs.create(_job(workdirs, "j1"))
    assert not os.path.lexists(work / "handoff") and workdirs.handoff_root is None


def test_the_folders_a_dead_worker_left_are_swept(tmp_path: Path, memory_dir: Path) -> None:
    workdirs = _workdirs(tmp_path, memory_dir)
    live = workdirs.create(_job(workdirs, "live"))
    assert workdirs.handoff_root is not None
    orphan = workdirs.handoff_root / "job-gone"
    orphan.mkdir()
    (orphan / "update-0").write_bytes(b"u" * 4096)
    assert workdirs.sweep_handoffs() == 1
    assert not orphan.exists() and (live / "handoff").resolve().is_dir()
    workdirs.clean_up("live", live)
    assert workdirs.sweep_handoffs() == 0 and not workdirs.handoff_root.exists()


def test_the_folder_is_found_by_the_jobs_id_not_through_the_link(tmp_path: Path, memory_dir: Path) -> None:
    """An executor that points handoff/ elsewhere gets nothing removed there."""
    workdirs = _workdirs(tmp_path, memory_dir)
    work = workdirs.create(_job(workdirs, "j1"))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    (work / "handoff").unlink()
    (work / "handoff").symlink_to(precious, target_is_directory=True)
    assert workdirs.clean_up("j1", work)
    assert (precious / "keep.txt").read_text() == "mine" and not work.exists()
