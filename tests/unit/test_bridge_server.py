"""A real job bridge on its Unix socket: token, GetJob, FetchResource, and forwarding to peers.

The peers (DataFetcher, the scheduler's CoordinationService) are small in-test gRPC servers
that record what they were sent.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.bridge.auth import bearer
from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.errors import BridgeError
from tendril.bridge.server import JobBridge
from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind
from tendril.core.identity import caller_id
from tendril.core.server import Binding, ServiceServer
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tendril_sdk.errors import error_reason
from tendril_sdk.job import ExecutorRef, JobDescriptor

TOKEN = "t0ken-for-tests"


class FakeScheduler(scheduler_pb2_grpc.CoordinationServiceServicer):
    def __init__(self) -> None:
        self.reports: list[tuple[str, scheduler_pb2.ReportProgressRequest]] = []

    async def ReportProgress(self, request: Any, context: Any) -> scheduler_pb2.ReportProgressResponse:
        self.reports.append((caller_id(context), request))
        return scheduler_pb2.ReportProgressResponse(
            directive=scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE, batches_until_update=3, round=request.round
        )


class FakeDataFetcher(data_pb2_grpc.DataFetcherServiceServicer):
    def __init__(self, cache_file: Path) -> None:
        self.cache_file = cache_file
        self.calls: list[tuple[str, str, Any]] = []
        self.fail_next = False

    async def OpenJob(self, request: Any, context: Any) -> data_pb2.OpenJobResponse:
        self.calls.append(("open", caller_id(context), request))
        return data_pb2.OpenJobResponse()

    async def NextSlice(self, request: Any, context: Any) -> data_pb2.NextSliceResponse:
        self.calls.append(("next", caller_id(context), request))
        if self.fail_next:
            raise BridgeError(ErrorKind.NOT_FOUND, "no data set assigned", reason="NO_DATASET")
        assignment = scheduler_pb2.SliceAssignment(dataset_id="ds", slice_name="slice-00007.safetensors", epoch=1)
        return data_pb2.NextSliceResponse(cache_path=str(self.cache_file), assignment=assignment, wait_seconds=0.25)

    async def CloseJob(self, request: Any, context: Any) -> data_pb2.CloseJobResponse:
        self.calls.append(("close", caller_id(context), request))
        return data_pb2.CloseJobResponse()


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[tuple[FakeScheduler, FakeDataFetcher, str, str]]:
    cache_file = tmp_path / "cache" / "slice"
    cache_file.parent.mkdir()
    cache_file.write_bytes(b"\x00" * 100)
    os.chmod(cache_file, 0o444)
    scheduler, fetcher = FakeScheduler(), FakeDataFetcher(cache_file)
    sched_server = ServiceServer(
        "127.0.0.1:0",
        [Binding("c", scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server, scheduler)],
        config_key="t",
    )
    data_server = ServiceServer(
        "127.0.0.1:0", [Binding("d", data_pb2_grpc.add_DataFetcherServiceServicer_to_server, fetcher)], config_key="t"
    )
    await sched_server.start()
    await data_server.start()
    try:
        yield scheduler, fetcher, sched_server.address, data_server.address
    finally:
        await sched_server.stop(0)
        await data_server.stop(0)


def _job(tmp_path: Path, coordinator: str = "", **config: Any) -> JobDescriptor:
    work = tmp_path / "job-b1"
    work.mkdir(mode=0o700)
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir()
    return JobDescriptor(
        job_id="b1",
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("example", "echo"),
        config={"run_id": "r1", **config},
        work_dir=work,
        socket_path=work / "bridge.sock",
        coordinator_address=coordinator,
    )


async def _code(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_token_get_job_fetch_and_cleanup(tmp_path: Path) -> None:
    job = _job(tmp_path, sleep_seconds=2)
    bridge = JobBridge(
        job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address="127.0.0.1:1", fetch_roots=[tmp_path]
    )
    await bridge.start()
    try:
        assert stat.S_IMODE(job.socket_path.stat().st_mode) == 0o600
        async with open_channel(f"unix:{job.socket_path}") as channel:
            stub = bridge_pb2_grpc.JobBridgeServiceStub(channel)
            missing = await _code(stub.GetJob(bridge_pb2.GetJobRequest()))
            assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "TENDRIL_BRIDGE_TOKEN" in missing.details()
            wrong = await _code(stub.GetJob(bridge_pb2.GetJobRequest(), metadata=bearer("nope")))
            assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_reason(wrong) == "BAD_BRIDGE_TOKEN"
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING, "health needs no token"

            got = await stub.GetJob(bridge_pb2.GetJobRequest(), metadata=bearer(TOKEN))
            assert (got.job_id, got.worker_id, got.executor.executor_class) == ("b1", "worker-test", "example")
            assert json_format.MessageToDict(got.config) == {"run_id": "r1", "sleep_seconds": 2}
            assert got.work_dir == str(job.work_dir)

            src = tmp_path / "res.txt"
            src.write_text("hello")
            fetched = await stub.FetchResource(
                bridge_pb2.FetchResourceRequest(uri=f"file://{src}", dest="in/res.txt"), metadata=bearer(TOKEN)
            )
            assert (fetched.path, fetched.size_bytes) == ("artifacts/in/res.txt", 5)
            assert (job.work_dir / fetched.path).read_text() == "hello"
            bad = await _code(
                stub.FetchResource(
                    bridge_pb2.FetchResourceRequest(uri=f"file://{src}", dest="../../x"), metadata=bearer(TOKEN)
                )
            )
            assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "'..'" in bad.details()

            no_sched = await _code(stub.ReportProgress(bridge_pb2.ReportProgressRequest(), metadata=bearer(TOKEN)))
            assert no_sched.code() == grpc.StatusCode.FAILED_PRECONDITION and "no scheduler" in no_sched.details()
            no_ps = await _code(
                stub.SendUpdate(
                    bridge_pb2.SendUpdateRequest(path="artifacts/in/res.txt", weight=1), metadata=bearer(TOKEN)
                )
            )
            assert no_ps.code() == grpc.StatusCode.FAILED_PRECONDITION and "parameter_server" in no_ps.details()
            no_file = await _code(
                stub.SendUpdate(bridge_pb2.SendUpdateRequest(path="nope.safetensors", weight=1), metadata=bearer(TOKEN))
            )
            assert no_file.code() == grpc.StatusCode.NOT_FOUND
            escape = await _code(
                stub.PublishParameters(bridge_pb2.PublishParametersRequest(path="/etc/passwd"), metadata=bearer(TOKEN))
            )
            assert escape.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await bridge.stop()
    assert not job.socket_path.exists()


async def test_progress_and_slices_go_to_the_peers(
    tmp_path: Path, peers: tuple[FakeScheduler, FakeDataFetcher, str, str]
) -> None:
    scheduler, fetcher, sched_address, data_address = peers
    job = _job(tmp_path, coordinator=sched_address)
    progress: list[tuple[str, dict[str, float]]] = []
    bridge = JobBridge(
        job,
        TOKEN,
        data_fetcher_address=data_address,
        paramserver_address="127.0.0.1:1",
        on_progress=lambda j, v: progress.append((j, v)),
    )
    await bridge.start()
    try:
        async with open_channel(f"unix:{job.socket_path}") as channel:
            stub = bridge_pb2_grpc.JobBridgeServiceStub(channel)
            event = scheduler_pb2.ReportProgressRequest(
                job_id="spoofed", kind=scheduler_pb2.PROGRESS_KIND_BATCH, round=2, batch_size=8, metrics={"loss": 3.5}
            )
            request = bridge_pb2.ReportProgressRequest(progress=event)
            reply = await stub.ReportProgress(request, metadata=bearer(TOKEN))
            # a batch report is answered at once; the scheduler hears of it in the background
            assert reply.directive.directive == scheduler_pb2.DIRECTIVE_CONTINUE
            for _ in range(200):
                if scheduler.reports:
                    break
                await asyncio.sleep(0.01)
            reply = await stub.ReportProgress(request, metadata=bearer(TOKEN))
            # the scheduler said "3 more after batch 1": after batch 2, 2 remain
            assert reply.directive.directive == scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE
            assert reply.directive.batches_until_update == 2
            peer, sent = scheduler.reports[0]
            assert (peer, sent.job_id, sent.worker_id, sent.round) == ("worker-test", "b1", "worker-test", 2)
            assert progress[0] == ("b1", {"round": 2.0, "loss": 3.5})

            got = await stub.NextSlice(bridge_pb2.NextSliceRequest(), metadata=bearer(TOKEN))
            assert got.path == "data/slice-00007.safetensors" and got.assignment.epoch == 1
            assert got.wait_seconds == 0.25
            placed = job.work_dir / got.path
            assert os.stat(placed).st_ino == os.stat(fetcher.cache_file).st_ino
            kinds = [(kind, peer, req.job_id) for kind, peer, req in fetcher.calls]
            assert kinds[:2] == [("open", "worker-test", "b1"), ("next", "worker-test", "b1")]
            assert fetcher.calls[0][2].coordinator_address == sched_address

            fetcher.fail_next = True
            failed = await _code(stub.NextSlice(bridge_pb2.NextSliceRequest(), metadata=bearer(TOKEN)))
            assert failed.code() == grpc.StatusCode.NOT_FOUND
            assert "DataFetcher at" in failed.details() and "no data set assigned" in failed.details()
            assert error_reason(failed) == "NO_DATASET"
    finally:
        await bridge.stop()
    assert fetcher.calls[-1][0] == "close"


async def test_unreachable_scheduler_is_unavailable_naming_it(tmp_path: Path) -> None:
    job = _job(tmp_path, coordinator="127.0.0.1:1")
    bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address="127.0.0.1:1")
    await bridge.start()
    try:
        async with open_channel(f"unix:{job.socket_path}") as channel:
            stub = bridge_pb2_grpc.JobBridgeServiceStub(channel)
            err = await _code(
                stub.ReportProgress(bridge_pb2.ReportProgressRequest(), metadata=bearer(TOKEN), timeout=20)
            )
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert "scheduler at 127.0.0.1:1" in err.details()
    finally:
        await bridge.stop()
