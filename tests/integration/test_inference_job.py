"""The inference executor run by a real JobService: a tiny GPT-2 made here, prompts JSONL in.

Real LeaseService + JobService processes (``job.keep_work_dirs``, so the results folder is read
after the job ended; ``job.fetch_roots`` lets the bridge fetch the model and prompts from the
test's folder by file://). The test holds the lease as scheduler "sched-it" and serves a
CoordinationService, so the executor's batch reports travel executor → bridge → this scheduler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2

from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2
from tests.integration.clients_env import RecordingScheduler, coordination_server, started_worker
from tests.integration.test_jobs_service import Worker, wait_for
from tests.tiny_lm import make_tiny_lm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

INFERENCE = common_pb2.ExecutorRef(executor_class="inference", name="generate")
PROMPTS = ["the quick brown fox", "a worker runs", "one two three"]


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    async with started_worker(
        tmp_path,
        job__keep_work_dirs=True,
        job__kill_grace_seconds=10,
        job__fetch_roots=[str(tmp_path)],
        lease__renewable_seconds=600,
    ) as started:
        yield started


async def dispatch(worker: Worker, job_id: str, lease_id: str, coordinator: str, **config: Any) -> None:
    values = struct_pb2.Struct()
    # NOTE: one thread: on a busy 2-core machine torch's threads spin for each other.
    values.update({"torch_threads": 1, **config})
    request = job_pb2.DispatchRequest(
        job_id=job_id, lease_id=lease_id, executor=INFERENCE, config=values, coordinator_address=coordinator
    )
    async with worker.channel("job") as ch:
        await job_pb2_grpc.JobServiceStub(ch).Dispatch(request, timeout=30)


def write_prompts(path: Path, objects: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return f"file://{path}"


async def test_inference_job_writes_a_line_per_prompt(worker: Worker, tmp_path: Path) -> None:
    model = make_tiny_lm(tmp_path / "gpt2")
    scheduler = RecordingScheduler()
    server = coordination_server(scheduler)
    await server.start()
    try:
        lease_id = await worker.lease()
        prompts = write_prompts(tmp_path / "p.jsonl", [{"prompt": p, "id": f"q{i}"} for i, p in enumerate(PROMPTS)])
        await dispatch(
            worker,
            "inf-1",
            lease_id,
            server.address,
            model={"source": f"file://{model}"},
            prompts=prompts,
            max_new_tokens=6,
            batch_size=2,
        )
        ended = await worker.wait_end("inf-1", timeout=150)
        assert ended.state == job_pb2.JOB_STATE_SUCCEEDED, (ended.reason, await worker.logs("inf-1"))

        # NOTE: read after the job ended, from the kept work dir (job.keep_work_dirs).
        results = worker.work_dir("inf-1") / "results"
        lines = [json.loads(line) for line in (results / "generations.jsonl").read_text().splitlines()]
        assert [line["id"] for line in lines] == ["q0", "q1", "q2"]
        assert [line["prompt"] for line in lines] == PROMPTS
        assert all(line["completion_tokens"] == 6 and line["prompt_tokens"] >= 1 for line in lines), lines
        assert all(isinstance(line["completion"], str) and line["seconds"] > 0 for line in lines)
        summary = json.loads((results / "summary.json").read_text())
        assert summary["complete"] and summary["prompts_done"] == 3 and summary["completion_tokens"] == 18
        assert summary["device"] == "cpu" and summary["tokens_per_second"] > 0

        reports = scheduler.of("inf-1")
        kinds = [r.kind for r in reports]
        assert kinds == [scheduler_pb2.PROGRESS_KIND_BATCH] * 2 + [scheduler_pb2.PROGRESS_KIND_FINISHED], kinds
        assert [r.metrics["prompts_done"] for r in reports[:2]] == [2, 3]
        assert ended.progress["prompts_done"] == 3, "JobService keeps the last figures for its watchers"
    finally:
        await server.stop(grace=0)


async def test_inference_job_refuses_bad_prompts_and_stops_on_cancel(worker: Worker, tmp_path: Path) -> None:
    model = make_tiny_lm(tmp_path / "gpt2", n_positions=512)
    scheduler = RecordingScheduler()
    server = coordination_server(scheduler)
    await server.start()
    try:
        lease_id = await worker.lease()
        bad = write_prompts(tmp_path / "bad.jsonl", [{"prompt": "a"}, {"text": "b"}])
        await dispatch(worker, "inf-bad", lease_id, server.address, model={"source": f"file://{model}"}, prompts=bad)
        ended = await worker.wait_end("inf-bad", timeout=120)
        assert ended.state == job_pb2.JOB_STATE_FAILED and ended.exit_code == 1
        assert "bad.jsonl line 2: unknown keys ['text']" in ended.reason and "BAD_PROMPTS" in ended.reason

        many = write_prompts(tmp_path / "many.jsonl", [{"prompt": f"{PROMPTS[i % 3]} {i}"} for i in range(200)])
        await dispatch(
            worker,
            "inf-stop",
            lease_id,
            server.address,
            model={"source": f"file://{model}"},
            prompts=many,
            max_new_tokens=200,
            batch_size=1,
        )
        await wait_for(lambda: len(scheduler.of("inf-stop")) >= 1, timeout=120, what="the first batch report")
        async with worker.channel("job") as ch:
            await job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="inf-stop", reason="enough"))
        ended = await worker.wait_end("inf-stop", timeout=60)
        assert ended.state == job_pb2.JOB_STATE_CANCELLED
        results = worker.work_dir("inf-stop") / "results"
        names = sorted(p.name for p in results.iterdir())
        assert names == ["generations.partial.jsonl"], names  # nothing that looks complete
        partial = (results / "generations.partial.jsonl").read_text().splitlines()
        assert 1 <= len(partial) < 200 and all(json.loads(line)["completion_tokens"] >= 1 for line in partial)
        assert "job.terminated" in await worker.logs("inf-stop")
    finally:
        await server.stop(grace=0)
