"""What the client-language tests share: tool lookups, a started worker, a test scheduler, table rows."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tendril.core.config import ExecutorConfig
from tendril.core.server import Binding, ServiceServer
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.integration.test_jobs_service import Worker, wait_for

REPO = Path(__file__).resolve().parents[2]
NODE_CLIENT = REPO / "clients" / "node"
NODE_EXECUTOR = REPO / "executors" / "node_example" / "main.js"
LIST_WORKER = NODE_CLIENT / "examples" / "list-worker.js"
GO_DEPS = Path("/usr/share/gocode/src/google.golang.org/grpc")


def require_node() -> str:
    """The node binary; skips the calling module when there is none, fails when npm deps are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node is not installed (Debian package nodejs): the Node client tests need it", allow_module_level=True
        )
    if not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"{NODE_CLIENT}/node_modules is missing: run `npm ci --prefix clients/node` first", pytrace=False)
    return node


def build_go_examples(into: Path) -> Path:
    """Build clients/go's example programs into ``into``; skips the caller without Debian's Go packages."""
    if shutil.which("go") is None or not GO_DEPS.is_dir():
        pytest.skip("no Go toolchain with Debian's gRPC sources (the packages are listed in scripts/go_check.py)")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "go_check.py"), "--build-to", str(into)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return into


@contextlib.asynccontextmanager
async def started_worker(
    tmp: Path, executors: Sequence[ExecutorConfig] = (), **overrides: Any
) -> AsyncIterator[Worker]:
    """A LeaseService and a JobService process (see test_jobs_service.Worker), killed on exit.

    ``executors`` are configured besides the default ones; ``overrides`` as for worker_config.
    """
    worker = Worker(tmp, **overrides)
    worker.config.executors.extend(executors)
    try:
        await worker.start_leases()
        await worker.start_jobs()
        yield worker
    finally:
        worker.close()


async def lease_with_two_jobs(worker: Worker) -> str:
    """A renewable lease with job "done-1" (SUCCEEDED) and, newer, "run-1" (RUNNING); its id."""
    lease_id = await worker.lease()
    await worker.dispatch("done-1", lease_id)
    assert (await worker.wait_end("done-1")).exit_code == 0
    await worker.dispatch("run-1", lease_id, sleep_seconds=120)
    await wait_for(lambda: (worker.work_dir("run-1") / "result.json").exists(), what="run-1 to start")
    return lease_id


def row(text: str, first_cell: str) -> tuple[int, list[str]]:
    """The line number and cells of the table row that starts with ``first_cell``."""
    for number, line in enumerate(text.splitlines()):
        cells = line.split()
        if cells and cells[0] == first_cell:
            return number, cells
    raise AssertionError(f"no row for {first_cell} in:\n{text}")


class RecordingScheduler(scheduler_pb2_grpc.CoordinationServiceServicer):
    """A scheduler's CoordinationService that records progress and answers CONTINUE.

    Jobs named in ``done_after`` get DIRECTIVE_DONE on their n-th report (1-based).
    """

    __test__ = False  # not a pytest class

    def __init__(self, done_after: dict[str, int] | None = None) -> None:
        self.reports: list[scheduler_pb2.ReportProgressRequest] = []
        self.done_after = done_after or {}

    async def ReportProgress(
        self, request: scheduler_pb2.ReportProgressRequest, context: Any
    ) -> scheduler_pb2.ReportProgressResponse:
        self.reports.append(request)
        seen = sum(1 for r in self.reports if r.job_id == request.job_id)
        done = seen >= self.done_after.get(request.job_id, seen + 1)
        directive = scheduler_pb2.DIRECTIVE_DONE if done else scheduler_pb2.DIRECTIVE_CONTINUE
        return scheduler_pb2.ReportProgressResponse(directive=directive, round=request.round)

    def of(self, job_id: str) -> list[scheduler_pb2.ReportProgressRequest]:
        return [r for r in self.reports if r.job_id == job_id]


def coordination_server(scheduler: RecordingScheduler) -> ServiceServer:
    """A ServiceServer for ``scheduler`` on a free loopback port (call ``start()``)."""
    return ServiceServer(
        "127.0.0.1:0",
        [
            Binding(
                "tendril.scheduler.v1.CoordinationService",
                scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server,
                scheduler,
            )
        ],
        config_key="test.scheduler",
    )
