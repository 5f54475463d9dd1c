"""tendril-sdk installs and works without the worker.

A fresh virtual environment gets only ``pip install clients/python``; the test shows that the
worker and its heavy dependencies are absent there, then a real worker (LeaseService and
JobService processes from the main environment) runs the example executor with THAT
environment's interpreter. The example executor is not installed there: the executor's
``env`` table puts ``executors/`` on its PYTHONPATH, which holds the shipped executors and
nothing of the worker. The job must succeed through GetJob and FetchResource on the bridge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from tendril.core.config import ExecutorConfig
from tendril_proto.job.v1 import job_pb2
from tests.integration.clients_env import started_worker
from tests.integration.test_jobs_service import Worker, executor_pids

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ROOT / "executors"
# The worker's own distribution and what only it needs; none may come with the SDK.
WORKER_ONLY = [
    "tendril",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "prometheus-client",
    "psutil",
    "cryptography",
    "nvidia-ml-py",
    "torch",
    "structlog",
]
PROBE = """
import importlib, importlib.metadata as md, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        md.distribution(name)
        found[name] = True
    except md.PackageNotFoundError:
        found[name] = False
modules = {}
for module in ("tendril", "tendril_sdk", "tendril_proto", "tendril_example", "opentelemetry", "pynvml"):
    try:
        importlib.import_module(module)
        modules[module] = True
    except ImportError:
        modules[module] = False
print(json.dumps({"distributions": found, "modules": modules, "sdk": md.version("tendril-sdk")}))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would point Python at the main venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1", **extra}


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv into which only clients/python was installed."""
    root = tmp_path_factory.mktemp("sdk-alone")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=_clean_env())
    # NOTE: installed from a copy, so that the build leaves nothing (build/, *.egg-info) in the checkout.
    source = root / "src"
    shutil.copytree(ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(),
        check=False,
    )
    assert done.returncode == 0, f"pip install clients/python failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return python


@pytest.fixture
async def worker(tmp_path: Path, sdk_python: Path) -> AsyncIterator[Worker]:
    executor = ExecutorConfig(
        "sdk",
        "echo",
        [str(sdk_python), "-m", "tendril_example", "--socket", "{SOCKET_PATH}"],
        env={"PYTHONPATH": str(EXECUTORS), "PYTHONNOUSERSITE": "1"},
    )
    async with started_worker(
        tmp_path, [executor], job__keep_work_dirs=True, job__fetch_roots=str(tmp_path)
    ) as started:
        yield started


def test_the_sdk_venv_has_no_worker(sdk_python: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [str(sdk_python), "-c", PROBE, *WORKER_ONLY],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_clean_env(PYTHONPATH=str(EXECUTORS)),
        check=True,
    )
    found = json.loads(probe.stdout)
    assert found["sdk"] == "0.1.0"
    assert not any(found["distributions"].values()), f"worker packages in the SDK's venv: {found['distributions']}"
    # The same PYTHONPATH as the executor below: the SDK, the stubs and the executor import; the worker does not.
    assert found["modules"] == {
        "tendril": False,
        "tendril_sdk": True,
        "tendril_proto": True,
        "tendril_example": True,
        "opentelemetry": False,
        "pynvml": False,
    }


async def test_the_example_executor_runs_on_the_sdk_alone(worker: Worker, sdk_python: Path, tmp_path: Path) -> None:
    resource = tmp_path / "input.txt"
    resource.write_bytes(b"fetched through the job bridge by an executor without the worker\n")
    lease_id = await worker.lease()
    began = time.monotonic()
    # NOTE: it sleeps a moment after writing result.json, so the test can see which interpreter runs it.
    await worker.dispatch("sdk-1", lease_id, executor_class="sdk", fetch=f"file://{resource}", sleep_seconds=3)
    work = worker.work_dir("sdk-1")
    deadline = time.monotonic() + 30
    while not (work / "result.json").exists():
        job = await worker.get("sdk-1")
        running = (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING)
        assert job.state in running, f"the executor ended early ({job.reason}):\n{await worker.logs('sdk-1')}"
        assert time.monotonic() < deadline, "the executor did not write result.json within 30 s"
        await asyncio.sleep(0.05)
    (pid,) = executor_pids(work)
    assert psutil.Process(pid).cmdline()[:3] == [str(sdk_python), "-m", "tendril_example"]
    ended = await worker.wait_end("sdk-1", timeout=60)
    log = await worker.logs("sdk-1")
    assert ended.state == job_pb2.JOB_STATE_SUCCEEDED and ended.exit_code == 0, f"{ended.reason}\n{log}"
    assert time.monotonic() - began < 45
    # GetJob answered the job's ids; FetchResource put the file under artifacts/ with its sha256.
    assert "[example] job sdk-1 on worker worker-test" in log
    assert "fetched file://" in log and "artifacts/input.txt" in log and "exiting with code 0" in log
    result = json.loads((worker.work_dir("sdk-1") / "result.json").read_text())
    digest = hashlib.sha256(resource.read_bytes()).hexdigest()
    assert result["job_id"] == "sdk-1" and result["worker_id"] == "worker-test"
    assert result["fetched"] == {"path": "artifacts/input.txt", "size_bytes": resource.stat().st_size, "sha256": digest}
    assert (worker.work_dir("sdk-1") / "artifacts" / "input.txt").read_bytes() == resource.read_bytes()
