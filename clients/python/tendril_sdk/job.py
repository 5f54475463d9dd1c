"""``job.json``: what JobService tells an executor about its job, typed.

JobService writes ``job.json`` into the job's work dir before it starts the executor and
passes its path as ``{JOB_JSON}`` in argv and as env ``JOB_JSON``. It writes the file from a
:class:`JobDescriptor` (:meth:`JobDescriptor.to_dict`) and hands the same object to the
job's bridge, so the file, the bridge and this reader cannot disagree. Its keys::

    {"job_id", "worker_id", "lease_id", "owner_id", "executor": {"class", "name"},
     "config": {...the dispatch config...}, "work_dir", "socket_path", "coordinator_address"}

:class:`JobDescriptor` has the same field names (``executor.class`` is
:attr:`ExecutorRef.executor_class`, as in the protos). Keys a newer worker adds are ignored;
missing keys other than ``job_id`` take their empty value, so a hand-written job.json for a
test needs only what the executor reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tendril_sdk.errors import ExecutorEnvError

__all__ = [
    "ERROR_FILE_NAME",
    "ERROR_MAX_CHARS",
    "JOB_JSON_ENV",
    "REMOTE_CODE_ENV",
    "RESULTS_DIR",
    "RESULTS_DIR_ENV",
    "ExecutorRef",
    "JobDescriptor",
    "JobDescriptorError",
    "read_error",
    "write_error",
]

JOB_JSON_ENV = "JOB_JSON"
SOCKET_NAME = "bridge.sock"
# An executor that fails writes one line saying why here (in its work dir); JobService makes it
# the FAILED job's reason, after the exit code, so its owner sees it without reading the log.
ERROR_FILE_NAME = "error.txt"
ERROR_MAX_CHARS = 1000
# "1" when the worker lets a job run model code shipped with a checkpoint (job.allow_remote_code), else "0".
REMOTE_CODE_ENV = "TENDRIL_ALLOW_REMOTE_CODE"
# The folder, relative to the work dir, whose files are the job's results: the JobService keeps
# it when the job ends and the job's owner fetches it (JobService ListResults / FetchResult).
RESULTS_DIR = "results"
RESULTS_DIR_ENV = "TENDRIL_RESULTS_DIR"  # holds RESULTS_DIR (relative to WORK_DIR)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_MAX_CHARS else line[: ERROR_MAX_CHARS - 1] + "…"


def write_error(work_dir: Path, message: str) -> None:
    """Leave ``message`` (one line, at most ERROR_MAX_CHARS) as the job's reason for failing; best effort."""
    # NOTE: a failure to write is ignored: the exit code and the log still say that it failed.
    with contextlib.suppress(OSError):
        (Path(work_dir) / ERROR_FILE_NAME).write_text(_one_line(message) + "\n")


def read_error(work_dir: Path) -> str:
    """What an executor left in ERROR_FILE_NAME ("" when nothing), one line of at most ERROR_MAX_CHARS."""
    try:
        with open(Path(work_dir) / ERROR_FILE_NAME, "rb") as f:
            raw = f.read(4 * ERROR_MAX_CHARS)
    except OSError:
        return ""
    return _one_line(raw.decode("utf-8", errors="replace"))


class JobDescriptorError(ValueError):
    """job.json is missing, unreadable or malformed; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class ExecutorRef:
    """The executor a job was dispatched to: ``class`` and ``name`` in job.json."""

    executor_class: str = ""
    name: str = ""


@dataclasses.dataclass(frozen=True)
class JobDescriptor:
    """The content of job.json."""

    job_id: str
    worker_id: str = ""
    lease_id: str = ""
    owner_id: str = ""
    executor: ExecutorRef = dataclasses.field(default_factory=ExecutorRef)
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    work_dir: Path = Path(".")
    socket_path: Path = Path(SOCKET_NAME)
    coordinator_address: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "job.json", base: Path | None = None) -> JobDescriptor:
        """Build from the parsed JSON; ``base`` is the work dir to assume when job.json has none."""

        def bad(key: str, want: str, value: Any) -> JobDescriptorError:
            return JobDescriptorError(f"{source}: {key} must be {want}, got {value!r}")

        def text(key: str, required: bool = False) -> str:
            value = data.get(key, None if required else "")
            if required and not value:
                raise JobDescriptorError(f"{source}: {key} is required (JobService always writes it)")
            if not isinstance(value, str):
                raise bad(key, "a string", value)
            return value

        if not isinstance(data, Mapping):
            raise JobDescriptorError(f"{source}: must hold a JSON object, got {type(data).__name__}")
        executor = data.get("executor") or {}
        if not isinstance(executor, Mapping):
            raise bad("executor", 'an object {"class", "name"}', executor)
        for key in ("class", "name"):
            if not isinstance(executor.get(key, ""), str):
                raise bad(f"executor.{key}", "a string", executor.get(key))
        config = data.get("config") or {}
        if not isinstance(config, Mapping):
            raise bad("config", "an object", config)
        work_dir = Path(text("work_dir")) if data.get("work_dir") else (base or Path("."))
        socket_path = Path(text("socket_path")) if data.get("socket_path") else work_dir / SOCKET_NAME
        return cls(
            job_id=text("job_id", required=True),
            worker_id=text("worker_id"),
            lease_id=text("lease_id"),
            owner_id=text("owner_id"),
            executor=ExecutorRef(executor.get("class", ""), executor.get("name", "")),
            config=dict(config),
            work_dir=work_dir,
            socket_path=socket_path,
            coordinator_address=text("coordinator_address"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The job.json document (:meth:`from_dict` reads it back to an equal descriptor)."""
        return {
            "job_id": self.job_id,
            "worker_id": self.worker_id,
            "lease_id": self.lease_id,
            "owner_id": self.owner_id,
            "executor": {"class": self.executor.executor_class, "name": self.executor.name},
            "config": dict(self.config),
            "work_dir": str(self.work_dir),
            "socket_path": str(self.socket_path),
            "coordinator_address": self.coordinator_address,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> JobDescriptor:
        """Read job.json at ``path`` (its directory is the work dir when the file names none)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise JobDescriptorError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise JobDescriptorError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path), base=path.parent)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobDescriptor:
        """Read the job.json named by env ``JOB_JSON`` (raises :class:`ExecutorEnvError` when unset)."""
        env = os.environ if env is None else env
        path = env.get(JOB_JSON_ENV, "")
        if not path:
            raise ExecutorEnvError(f"env {JOB_JSON_ENV} is not set; JobService passes the path of job.json this way")
        return cls.load(path)

    @property
    def has_scheduler(self) -> bool:
        """Whether the job was dispatched with a scheduler (NextSlice and ReportProgress need one)."""
        return bool(self.coordinator_address)
