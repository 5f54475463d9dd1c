"""The Node executor (executors/node_example) run by a real JobService process.

Real LeaseService + JobService processes; the test holds the lease as scheduler "sched-it" and
serves a real CoordinationService in this process, so the executor's ReportProgress travels
Node → bridge (Unix socket, token) → JobService's bridge → this scheduler.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2

from tendril.core.config import ExecutorConfig
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2
from tests.integration.clients_env import (
    NODE_EXECUTOR,
    RecordingScheduler,
    coordination_server,
    require_node,
    started_worker,
)
from tests.integration.test_jobs_service import Worker, wait_for

pytestmark = pytest.mark.integration

NODE = require_node()
NODE_REF = common_pb2.ExecutorRef(executor_class="example", name="node")


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    node_executor = ExecutorConfig("example", "node", [NODE, str(NODE_EXECUTOR), "{SOCKET_PATH}"])
    async with started_worker(
        tmp_path, [node_executor], job__kill_grace_seconds=3, job__keep_work_dirs=True
    ) as started:
        yield started


async def dispatch(worker: Worker, job_id: str, lease_id: str, coordinator: str = "", **config: Any) -> job_pb2.Job:
    values = struct_pb2.Struct()
    values.update(config)
    request = job_pb2.DispatchRequest(
        job_id=job_id, lease_id=lease_id, executor=NODE_REF, config=values, coordinator_address=coordinator
    )
    async with worker.channel("job") as ch:
        return (await job_pb2_grpc.JobServiceStub(ch).Dispatch(request, timeout=30)).job


def result_of(worker: Worker, job_id: str) -> dict[str, Any]:
    return json.loads((worker.work_dir(job_id) / "node-result.json").read_text())


async def test_node_executor_reports_progress_and_succeeds(worker: Worker) -> None:
    scheduler = RecordingScheduler(done_after={"n-done": 2})
    server = coordination_server(scheduler)
    await server.start()
    try:
        lease_id = await worker.lease()
        job = await dispatch(worker, "n-1", lease_id, server.address, steps=3, answer=42)
        assert job.state == job_pb2.JOB_STATE_RUNNING
        ended = await worker.wait_end("n-1")
        assert ended.state == job_pb2.JOB_STATE_SUCCEEDED and ended.exit_code == 0, (
            ended.reason,
            await worker.logs("n-1"),
        )

        reports = scheduler.of("n-1")
        kinds = [r.kind for r in reports]
        assert kinds == [scheduler_pb2.PROGRESS_KIND_BATCH] * 3 + [scheduler_pb2.PROGRESS_KIND_FINISHED]
        assert all(r.worker_id == worker.config.worker_id for r in reports), "the bridge fills in the worker"
        assert [r.metrics["step"] for r in reports[:3]] == [0, 1, 2]
        assert reports[2].metrics["loss"] == pytest.approx(1 / 3)
        assert ended.progress["loss"] == pytest.approx(1 / 3), "JobService keeps the last figures"

        result = result_of(worker, "n-1")
        assert result["job_id"] == "n-1" and result["worker_id"] == worker.config.worker_id
        assert result["executor"] == "example/node" and result["config"] == {"steps": 3, "answer": 42}
        assert [r["directive"] for r in result["reports"]] == ["DIRECTIVE_CONTINUE"] * 4
        assert result["node_version"].startswith("v") and result["exit_code"] == 0
        text = await worker.logs("n-1")
        assert "[node-example] job n-1 on worker worker-test, executor example/node" in text
        assert "exiting with code 0" in text

        # The scheduler's directive reaches the Node program: it answers DONE from the 2nd
        # report on. Batch reports are answered by the bridge at once and forwarded behind the
        # program's back, so DONE arrives a report or two later, and the program stops there.
        await dispatch(worker, "n-done", lease_id, server.address, steps=10)
        ended = await worker.wait_end("n-done")
        assert ended.state == job_pb2.JOB_STATE_SUCCEEDED, await worker.logs("n-done")
        directives = [r["directive"] for r in result_of(worker, "n-done")["reports"]]
        assert 3 <= len(directives) < 10, directives
        assert directives == ["DIRECTIVE_CONTINUE"] * (len(directives) - 1) + ["DIRECTIVE_DONE"]
        assert len(scheduler.of("n-done")) == len(directives), "every report reached the scheduler"

        # Exit codes pass through; without a scheduler it says so and reports nothing.
        await dispatch(worker, "n-fail", lease_id, exit_code=3)
        ended = await worker.wait_end("n-fail")
        assert ended.state == job_pb2.JOB_STATE_FAILED and ended.exit_code == 3
        assert result_of(worker, "n-fail")["reports"] == []
        assert "no scheduler to report progress to" in await worker.logs("n-fail")
    finally:
        await server.stop(grace=0)


async def test_node_executor_stops_at_once_on_sigterm(worker: Worker) -> None:
    lease_id = await worker.lease()
    await dispatch(worker, "n-term", lease_id, sleep_seconds=120)
    result = worker.work_dir("n-term") / "node-result.json"
    await wait_for(lambda: result.exists(), what="the Node executor to write its result")
    begun = time.monotonic()
    async with worker.channel("job") as ch:
        reply = await job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="n-term", reason="stop"))
    assert time.monotonic() - begun < 3, "the Node executor stops at once on SIGTERM (grace is 3 s)"
    assert reply.job.state == job_pb2.JOB_STATE_CANCELLED and reply.job.exit_code == 143
    assert "SIGTERM: stopping now" in await worker.logs("n-term")


def test_node_executor_refuses_to_start_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SOCKET_PATH", "TENDRIL_BRIDGE_TOKEN")}
    done = subprocess.run(
        [NODE, str(NODE_EXECUTOR), "/nonexistent.sock"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "TENDRIL_BRIDGE_TOKEN" in done.stderr
