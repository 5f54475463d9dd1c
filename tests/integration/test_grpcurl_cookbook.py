"""docs/GRPCURL.md: every ```sh block runs against a live worker and prints what the page says.

How (see also the page's last section and tests/cookbook.py): a real worker (`tendril worker
run`) on free ports plus a test scheduler that accepts every offer; each block runs in order
with bash from the repository root, after the documented 127.0.0.1:<default port> addresses
are replaced by where each service really listens. Free ports rather than a port offset: the
test must not collide with a worker on the default ports or with other tests running at once,
and the embedded gateway's port is not shifted by ``worker.port_offset`` anyway.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tests.cookbook import DOCUMENTED_PORTS, PROVIDED_ENV, Block, parse, substitute
from tests.cookbook import json_path as read_json_path
from tests.integration.live_worker import LiveWorker, live_worker, wait_all_serving
from tests.scheduler_double import SchedulerDouble, accept

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "docs" / "GRPCURL.md"
BRIDGE_JOB = "hello-1"
BLOCK_TIMEOUT_SECONDS = 60


def _ports(worker: LiveWorker, scheduler: SchedulerDouble) -> dict[int, str]:
    """Each documented port -> where that service of the live worker (or the test scheduler) listens."""
    config = worker.config
    where = {section: config.listen(section) for section in WorkerConfig.SERVICE_SECTIONS}
    where |= {"gateway": config.gateway.embedded_listen, "scheduler": scheduler.address}
    return {port: where[name] for port, name in DOCUMENTED_PORTS.items()}


async def _bridge_env(worker: LiveWorker) -> dict[str, str]:
    """SOCKET_PATH and TENDRIL_BRIDGE_TOKEN of the running hello-1 executor (as an operator finds them)."""
    async with open_channel(worker.config.listen("job"), peer_id="cookbook") as channel:
        job = (await job_pb2_grpc.JobServiceStub(channel).Get(job_pb2.GetRequest(job_id=BRIDGE_JOB), timeout=10)).job
    socket_path = str(Path(job.work_dir) / "bridge.sock")
    for proc in psutil.Process(worker.proc.pid).children(recursive=True):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("SOCKET_PATH") == socket_path and env.get("TENDRIL_BRIDGE_TOKEN"):
            return {"SOCKET_PATH": socket_path, "TENDRIL_BRIDGE_TOKEN": env["TENDRIL_BRIDGE_TOKEN"]}
    raise AssertionError(f"no executor of job {BRIDGE_JOB} with SOCKET_PATH={socket_path} under the worker")


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_SECONDS,
        check=False,
    )


def _problems(block: Block, done: subprocess.CompletedProcess[str]) -> list[str]:
    out = done.stdout + done.stderr
    problems = [f"exit status {done.returncode}, documented {block.exit}"] if done.returncode != block.exit else []
    problems += [f"output lacks {snippet!r}" for snippet in block.expect if snippet not in out]
    return problems


async def _run_block(block: Block, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run until it prints what the page says, retrying for ``block.wait`` seconds."""
    deadline = time.monotonic() + block.wait
    while True:
        done = await asyncio.to_thread(_run, code, env)
        if not _problems(block, done) or time.monotonic() >= deadline:
            return done
        await asyncio.sleep(0.2)


async def test_every_cookbook_command_works_against_a_live_worker(tmp_path: Path) -> None:
    blocks = parse(COOKBOOK)
    runnable = [b for b in blocks if not b.skip]
    assert len(runnable) >= 25, f"only {len(runnable)} runnable blocks in {COOKBOOK}"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    failures: list[str] = []
    ran = 0
    async with SchedulerDouble("sched-1", decide=accept()) as scheduler:
        # NOTE: a long lease time: the page's lease must outlive the whole run without renewals.
        with live_worker(tmp_path, lease__renewable_seconds=300) as worker:
            await wait_all_serving(worker)
            ports = _ports(worker, scheduler)
            started = time.monotonic()
            for block in runnable:
                missing = [v for v in block.env if v not in env]
                if PROVIDED_ENV & set(missing):
                    env.update(await _bridge_env(worker))
                    missing = [v for v in block.env if v not in env]
                if missing:
                    failures.append(f"GRPCURL.md:{block.line}: not run, no earlier block captured {missing}")
                    continue
                done = await _run_block(block, substitute(block.code, ports), env)
                ran += 1
                problems = _problems(block, done)
                if problems:
                    failures.append(
                        f"GRPCURL.md:{block.line}: {'; '.join(problems)}\n$ {block.code}"
                        f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
                    )
                    continue
                for var, path in block.capture.items():
                    env[var] = read_json_path(json.loads(done.stdout), path)
            print(f"\n{ran} cookbook blocks ran in {time.monotonic() - started:.1f}s ({len(blocks) - ran} skipped)")
    assert not failures, "\n\n".join(failures)
