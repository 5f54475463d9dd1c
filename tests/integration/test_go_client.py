"""The Go stubs in use: clients/go/examples/list-worker, built offline, against live services.

Skipped where Debian's Go packages are not installed (the Go stubs are optional).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.integration.clients_env import build_go_examples, lease_with_two_jobs, row, started_worker
from tests.integration.test_jobs_service import OWNER

pytestmark = pytest.mark.integration


async def test_go_list_worker_prints_leases_and_jobs(tmp_path: Path) -> None:
    binary = build_go_examples(tmp_path / "bin") / "list-worker"
    async with started_worker(tmp_path / "w") as worker:
        lease_id = await lease_with_two_jobs(worker)
        leases, jobs = worker.config.listen("lease"), worker.config.listen("job")
        done = await asyncio.to_thread(
            subprocess.run, [str(binary), leases, jobs, "ops"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert f"Leases at {leases} (1)" in done.stdout and f"Jobs at {jobs} (2)" in done.stdout
        assert row(done.stdout, lease_id)[1][1:7] == [OWNER, "RENEWABLE", "1", "1", "0", "100"]
        assert row(done.stdout, "done-1")[1][1:5] == ["SUCCEEDED", "example/echo", OWNER, lease_id]
        assert row(done.stdout, "run-1")[1][1:5] == ["RUNNING", "example/echo", OWNER, lease_id]
        failed = await asyncio.to_thread(
            subprocess.run, [str(binary), leases, "127.0.0.1:1"], capture_output=True, text=True, timeout=60
        )
        assert failed.returncode == 1 and "JobService.List at 127.0.0.1:1" in failed.stderr
