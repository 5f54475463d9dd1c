"""The Node client program (clients/node/examples/list-worker.js) against live services.

Real LeaseService + JobService processes with one lease and two jobs (one finished, one
running); the program's tables must show all three. Then the same program under mTLS.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from tendril.certs.ops import init_ca, issue
from tendril.core.config import TlsSection
from tests.integration.clients_env import LIST_WORKER, lease_with_two_jobs, require_node, row, started_worker
from tests.integration.test_jobs_service import OWNER
from tests.procs import running, spawn_service, worker_config

pytestmark = pytest.mark.integration

NODE = require_node()


async def list_worker(*args: str, tls: TlsSection | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_TLS_")}
    if tls is not None:
        env.update(
            TENDRIL_TLS_CA_FILE=tls.ca_file, TENDRIL_TLS_CERT_FILE=tls.cert_file, TENDRIL_TLS_KEY_FILE=tls.key_file
        )
    return await asyncio.to_thread(
        subprocess.run, [NODE, str(LIST_WORKER), *args], capture_output=True, text=True, timeout=60, env=env
    )


async def test_list_worker_prints_leases_and_jobs(tmp_path: Path) -> None:
    async with started_worker(tmp_path) as worker:
        lease_id = await lease_with_two_jobs(worker)
        leases, jobs = worker.config.listen("lease"), worker.config.listen("job")

        done = await list_worker(leases, jobs, "ops")
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert f"Leases at {leases} (1)" in out and f"Jobs at {jobs} (2)" in out
        _, lease = row(out, lease_id)
        assert lease[1:7] == [OWNER, "RENEWABLE", "1", "1", "0", "100"], lease
        assert lease[7].endswith("s"), "expires in, in seconds"
        done_line, done_job = row(out, "done-1")
        run_line, run_job = row(out, "run-1")
        assert done_job[1:5] == ["SUCCEEDED", "example/echo", OWNER, lease_id]
        assert run_job[1:5] == ["RUNNING", "example/echo", OWNER, lease_id]
        assert run_line < done_line, "newest job first"

        dead = "127.0.0.1:1"
        failed = await list_worker(leases, dead)
        assert failed.returncode == 1 and f"JobService.List at {dead} failed: UNAVAILABLE" in failed.stderr
        usage = await list_worker(leases)
        assert usage.returncode == 2 and "usage: list-worker.js LEASE_ADDRESS JOB_ADDRESS [PEER_ID]" in usage.stderr


async def test_list_worker_speaks_mtls_and_is_refused_without_a_certificate_of_the_ca(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca-a")
    init_ca(tmp_path / "ca-b")
    worker_tls = issue(tmp_path / "ca-a", "worker-test").tls()
    ops = issue(tmp_path / "ca-a", "ops").tls()
    # Trusts our CA (so it could verify the worker) but holds a certificate of another CA.
    stranger = issue(tmp_path / "ca-b", "ops").tls()
    stranger.ca_file = ops.ca_file
    config = worker_config(
        tmp_path / "w",
        tls__ca_file=worker_tls.ca_file,
        tls__cert_file=worker_tls.cert_file,
        tls__key_file=worker_tls.key_file,
    )
    leases, jobs = config.listen("lease"), config.listen("job")
    procs = [spawn_service(name, config, tmp_path) for name in ("lease", "job")]
    with running(*procs):
        # NOTE: tests.procs.wait_serving speaks plaintext; polling the program itself also
        # proves it connects as soon as the services listen.
        deadline = time.monotonic() + 60
        while (done := await list_worker(leases, jobs, tls=ops)).returncode != 0:
            assert time.monotonic() < deadline, done.stderr
            await asyncio.sleep(0.2)
        assert f"Leases at {leases} (0)" in done.stdout and f"Jobs at {jobs} (0)" in done.stdout

        plaintext = await list_worker(leases, jobs)
        assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr
        foreign = await list_worker(leases, jobs, tls=stranger)
        assert foreign.returncode == 1 and "UNAVAILABLE" in foreign.stderr
