"""tendril_sdk.job: job.json as JobService writes it, read back typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tendril.job.model import JobRecord, JobState
from tendril.job.workdir import WorkDirs
from tendril_sdk import ExecutorEnvError, ExecutorRef, JobDescriptor, JobDescriptorError


def _written_by_job_service(work: Path) -> Path:
    """job.json from JobService's own writer, so the SDK's reader cannot drift from it."""
    record = JobRecord(
        job_id="j-1",
        lease_id="L-1",
        owner_id="sched-a",
        executor_class="train",
        executor_name="diloco",
        state=JobState.PENDING,
        created_at=0.0,
        work_dir=str(work),
        config={"run_id": "r", "rounds": 2, "model": {"n_layer": 1}},
        coordinator_address="127.0.0.1:7000",
    )
    workdirs = WorkDirs(work, work / "logs", worker_id="worker-9", keep=False)
    workdirs._write_job_json(workdirs.descriptor(record))
    return work / "job.json"


def test_reads_what_job_service_writes(tmp_path: Path) -> None:
    path = _written_by_job_service(tmp_path)
    job = JobDescriptor.load(path)
    assert job == JobDescriptor(
        job_id="j-1",
        worker_id="worker-9",
        lease_id="L-1",
        owner_id="sched-a",
        executor=ExecutorRef("train", "diloco"),
        config={"run_id": "r", "rounds": 2, "model": {"n_layer": 1}},
        work_dir=tmp_path,
        socket_path=tmp_path / "bridge.sock",
        coordinator_address="127.0.0.1:7000",
    )
    assert job.has_scheduler
    # Every key JobService writes is a field of the descriptor, under the same name.
    fields = set(JobDescriptor.__dataclass_fields__)
    assert set(json.loads(path.read_text())) == fields
    assert JobDescriptor.from_env({"JOB_JSON": str(path)}) == job


def test_defaults_for_a_minimal_file_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"job_id": "j", "config": {"a": 1}, "added_by_a_newer_worker": True}))
    job = JobDescriptor.load(path)
    assert job.job_id == "j" and job.config == {"a": 1} and job.executor == ExecutorRef()
    assert job.work_dir == tmp_path and job.socket_path == tmp_path / "bridge.sock"
    assert not job.has_scheduler


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"config": {}}), "job_id is required"),
        (json.dumps({"job_id": 7}), "job_id must be a string"),
        (json.dumps({"job_id": "j", "config": [1]}), "config must be an object"),
        (json.dumps({"job_id": "j", "executor": "train"}), "executor must be"),
        (json.dumps({"job_id": "j", "executor": {"class": 1}}), "executor.class must be a string"),
        (json.dumps({"job_id": "j", "coordinator_address": 5}), "coordinator_address must be a string"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "job.json"
    path.write_text(content)
    with pytest.raises(JobDescriptorError, match=needle) as err:
        JobDescriptor.load(path)
    assert str(path) in str(err.value)


def test_missing_file_and_env(tmp_path: Path) -> None:
    with pytest.raises(JobDescriptorError, match="cannot read"):
        JobDescriptor.load(tmp_path / "absent.json")
    with pytest.raises(ExecutorEnvError, match="JOB_JSON"):
        JobDescriptor.from_env({})
