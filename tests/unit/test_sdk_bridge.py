"""tendril_sdk.BridgeClient against a fake JobBridgeService on a Unix socket (every RPC, the
token, retries, rich errors) and against the worker's real bridge (its reasons)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.errors import BridgeError as WorkerBridgeError
from tendril.bridge.server import JobBridge
from tendril.core.errors import ErrorKind
from tendril.core.interceptors import abort_with
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.common.v1 import common_pb2
from tendril_proto.paramserver.v1 import paramserver_pb2
from tendril_proto.scheduler.v1 import scheduler_pb2
from tendril_sdk import (
    DEFAULT_RETRY,
    BridgeClient,
    BridgeError,
    BridgeReason,
    DirectiveKind,
    ExecutorEnvError,
    ProgressKind,
    RetryPolicy,
    RunState,
    RunStatus,
)
from tendril_sdk.job import ExecutorRef, JobDescriptor

TOKEN = "sdk-t0ken"
FAST = dataclasses.replace(DEFAULT_RETRY, initial_backoff=0.01, max_backoff=0.02, deadline=5.0)


class FakeBridge(bridge_pb2_grpc.JobBridgeServiceServicer):
    """Answers every RPC from fixed values and records (method, request, authorization)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str]] = []
        self.failures: list[tuple[grpc.StatusCode, str]] = []  # answered before the next real answers
        # One list per WatchRun call: the statuses it streams; a status code in it breaks the stream.
        self.watches: list[list[paramserver_pb2.RoundStatus | grpc.StatusCode]] = []

    async def _record(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        auth = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.calls.append((method, request, auth))
        if self.failures:
            code, reason = self.failures.pop(0)
            if reason:
                await abort_with(context, WorkerBridgeError(ErrorKind[code.name], f"{method} failed", reason=reason))
            await context.abort(code, f"{method} failed")

    async def GetJob(self, request: Any, context: Any) -> bridge_pb2.GetJobResponse:
        await self._record("GetJob", request, context)
        config = struct_pb2.Struct()
        config.update({"run_id": "r1", "rounds": 3, "nested": {"x": "y"}})
        return bridge_pb2.GetJobResponse(
            job_id="j1",
            worker_id="w1",
            executor=common_pb2.ExecutorRef(executor_class="train", name="diloco"),
            config=config,
            work_dir="/elsewhere/job-j1",
        )

    async def FetchResource(self, request: Any, context: Any) -> bridge_pb2.FetchResourceResponse:
        await self._record("FetchResource", request, context)
        return bridge_pb2.FetchResourceResponse(path="artifacts/model.bin", size_bytes=12, sha256="ab" * 32)

    async def NextSlice(self, request: Any, context: Any) -> bridge_pb2.NextSliceResponse:
        await self._record("NextSlice", request, context)
        assignment = scheduler_pb2.SliceAssignment(dataset_id="ds", slice_name="slice-00001.safetensors", epoch=2)
        return bridge_pb2.NextSliceResponse(
            path="data/slice-00001.safetensors", assignment=assignment, wait_seconds=0.5
        )

    async def SendUpdate(self, request: Any, context: Any) -> bridge_pb2.SendUpdateResponse:
        await self._record("SendUpdate", request, context)
        return bridge_pb2.SendUpdateResponse(bytes_sent=1024, seconds=0.25)

    async def ReceiveUpdate(self, request: Any, context: Any) -> bridge_pb2.ReceiveUpdateResponse:
        await self._record("ReceiveUpdate", request, context)
        return bridge_pb2.ReceiveUpdateResponse(
            path=request.path or f"updates/round-{request.round}.safetensors",
            bytes_received=2048,
            seconds=1.5,
            contributors=3,
        )

    async def ReportProgress(self, request: Any, context: Any) -> bridge_pb2.ReportProgressResponse:
        await self._record("ReportProgress", request, context)
        directive = scheduler_pb2.ReportProgressResponse(
            directive=scheduler_pb2.DIRECTIVE_SCHEDULE_UPDATE, batches_until_update=4, round=request.progress.round
        )
        return bridge_pb2.ReportProgressResponse(directive=directive)

    async def PublishParameters(self, request: Any, context: Any) -> bridge_pb2.PublishParametersResponse:
        await self._record("PublishParameters", request, context)
        return bridge_pb2.PublishParametersResponse(accepted=True, round=0)

    async def FetchParameters(self, request: Any, context: Any) -> bridge_pb2.FetchParametersResponse:
        await self._record("FetchParameters", request, context)
        return bridge_pb2.FetchParametersResponse(path=request.path or "params/current.safetensors", round=5)

    async def OpenRun(self, request: Any, context: Any) -> bridge_pb2.OpenRunResponse:
        await self._record("OpenRun", request, context)
        return bridge_pb2.OpenRunResponse(run_id=request.run_id or "r1", round=2, resumed=True)

    async def WatchRun(self, request: Any, context: Any) -> AsyncIterator[bridge_pb2.WatchRunResponse]:
        await self._record("WatchRun", request, context)
        for item in self.watches.pop(0):
            if isinstance(item, grpc.StatusCode):
                await context.abort(item, "the parameter server went away")
            yield bridge_pb2.WatchRunResponse(status=item)

    async def CloseRun(self, request: Any, context: Any) -> bridge_pb2.CloseRunResponse:
        await self._record("CloseRun", request, context)
        return bridge_pb2.CloseRunResponse()


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[FakeBridge, Path]]:
    servicer = FakeBridge()
    server = grpc.aio.server()
    bridge_pb2_grpc.add_JobBridgeServiceServicer_to_server(servicer, server)
    socket = tmp_path / "bridge.sock"
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    try:
        yield servicer, socket
    finally:
        await server.stop(0)


async def test_every_rpc_with_the_token(fake: tuple[FakeBridge, Path], tmp_path: Path) -> None:
    servicer, socket = fake
    async with BridgeClient(socket, TOKEN, retry_policy=FAST) as bridge:
        assert bridge.work_dir == tmp_path  # the socket's directory
        job = await bridge.get_job()
        assert (job.job_id, job.worker_id, job.executor.executor_class, job.executor.name) == (
            "j1",
            "w1",
            "train",
            "diloco",
        )
        assert job.config == {"run_id": "r1", "rounds": 3, "nested": {"x": "y"}}
        assert job.work_dir == Path("/elsewhere/job-j1")

        fetched = await bridge.fetch_resource("file:///x/model.bin", dest="model.bin", sha256="cd" * 32)
        assert fetched.path == tmp_path / "artifacts/model.bin" and fetched.relative == "artifacts/model.bin"
        assert (fetched.size_bytes, fetched.sha256) == (12, "ab" * 32)

        piece = await bridge.next_slice()
        assert piece.path == tmp_path / "data/slice-00001.safetensors" and piece.assignment.epoch == 2
        assert piece.wait_seconds == 0.5

        # An absolute path inside the work dir goes out relative, as the bridge wants it.
        sent = await bridge.send_update(tmp_path / "updates" / "delta.safetensors", 4, 12.0)
        assert (sent.bytes_sent, sent.seconds) == (1024, 0.25)

        received = await bridge.receive_update(4, timeout_seconds=30.0)
        assert received.path == tmp_path / "updates/round-4.safetensors" and received.contributors == 3
        assert (received.bytes_received, received.seconds) == (2048, 1.5)

        directive = await bridge.report_progress(
            ProgressKind.BATCH, 4, batch_size=8, batch_seconds=0.1, metrics={"loss": 2}
        )
        assert directive.kind is DirectiveKind.SCHEDULE_UPDATE and directive.kind == "schedule_update"
        assert (directive.batches_until_update, directive.round) == (4, 4)
        assert (await bridge.report_progress("finished", 5)).round == 5

        published = await bridge.publish_parameters("params/theta0.safetensors")
        assert published.accepted and published.round == 0
        params = await bridge.fetch_parameters()
        assert params.path == tmp_path / "params/current.safetensors" and params.round == 5

        with pytest.raises(ValueError, match="not inside the job's work dir"):
            await bridge.send_update("/etc/passwd", 0, 1.0)

    requests = {method: request for method, request, _ in servicer.calls}
    assert {auth for _, _, auth in servicer.calls} == {f"Bearer {TOKEN}"}
    assert [m for m, _, _ in servicer.calls] == [
        "GetJob",
        "FetchResource",
        "NextSlice",
        "SendUpdate",
        "ReceiveUpdate",
        "ReportProgress",
        "ReportProgress",
        "PublishParameters",
        "FetchParameters",
    ]
    assert (requests["FetchResource"].uri, requests["FetchResource"].dest) == ("file:///x/model.bin", "model.bin")
    assert requests["SendUpdate"].path == "updates/delta.safetensors" and requests["SendUpdate"].weight == 12.0
    assert requests["ReceiveUpdate"].timeout_seconds == 30.0 and requests["ReceiveUpdate"].round == 4
    progress = [r.progress for m, r, _ in servicer.calls if m == "ReportProgress"]
    assert progress[0].kind == scheduler_pb2.PROGRESS_KIND_BATCH and progress[0].metrics["loss"] == 2.0
    assert progress[1].kind == scheduler_pb2.PROGRESS_KIND_FINISHED
    assert requests["PublishParameters"].path == "params/theta0.safetensors" and requests["FetchParameters"].path == ""


async def test_unavailable_is_retried_and_answers_are_raised_with_their_reason(fake: tuple[FakeBridge, Path]) -> None:
    servicer, socket = fake
    async with BridgeClient(socket, TOKEN, retry_policy=FAST) as bridge:
        servicer.failures = [(grpc.StatusCode.UNAVAILABLE, ""), (grpc.StatusCode.UNAVAILABLE, "FETCHER_STOPPING")]
        assert (await bridge.next_slice()).relative == "data/slice-00001.safetensors"
        assert [m for m, _, _ in servicer.calls] == ["NextSlice"] * 3

        servicer.calls.clear()
        servicer.failures = [(grpc.StatusCode.FAILED_PRECONDITION, "ROUND_CLOSED")]
        with pytest.raises(BridgeError) as err:
            await bridge.send_update("updates/d.safetensors", 2, 1.0)
        assert len(servicer.calls) == 1, "an answer is not retried"
        assert err.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.reason is BridgeReason.ROUND_CLOSED and err.value.method == "SendUpdate"
        assert err.value.message == "SendUpdate failed"

        # A per-call policy: retry the parameter server's "run not open yet" too.
        servicer.calls.clear()
        servicer.failures = [(grpc.StatusCode.NOT_FOUND, "RUN_NOT_OPEN")] * 2
        policy = dataclasses.replace(FAST, reasons=frozenset({BridgeReason.RUN_NOT_OPEN}))
        assert (await bridge.publish_parameters("p.safetensors", retry_policy=policy)).accepted
        assert len(servicer.calls) == 3
        servicer.failures = [(grpc.StatusCode.NOT_FOUND, "RUN_NOT_OPEN")]
        with pytest.raises(BridgeError) as err:
            await bridge.publish_parameters("p.safetensors")
        assert err.value.reason is BridgeReason.RUN_NOT_OPEN


async def test_retries_end_at_the_policy_deadline(tmp_path: Path) -> None:
    policy = RetryPolicy(
        codes=frozenset({grpc.StatusCode.UNAVAILABLE}), attempts=None, deadline=0.3, initial_backoff=0.05
    )
    async with BridgeClient(tmp_path / "nobody.sock", TOKEN, retry_policy=policy) as bridge:
        began = asyncio.get_running_loop().time()
        with pytest.raises(BridgeError) as err:
            await bridge.get_job()
    assert err.value.code is grpc.StatusCode.UNAVAILABLE and err.value.method == "GetJob"
    assert asyncio.get_running_loop().time() - began < 5


def _round(round: int, *committed: str, run_state: int = paramserver_pb2.RUN_STATE_OPEN) -> paramserver_pb2.RoundStatus:
    closed = run_state != paramserver_pb2.RUN_STATE_OPEN
    return paramserver_pb2.RoundStatus(
        run_id="r1",
        round=round,
        state=paramserver_pb2.ROUND_STATE_CLOSED if closed else paramserver_pb2.ROUND_STATE_OPEN,
        committed_workers=committed,
        expected_workers=2,
        rounds=2,
        run_state=run_state,
    )


async def test_run_rpcs_are_typed_and_a_broken_watch_is_opened_again(fake: tuple[FakeBridge, Path]) -> None:
    servicer, socket = fake
    async with BridgeClient(socket, TOKEN, retry_policy=FAST) as bridge:
        opened = await bridge.open_run(
            expected_workers=2, quorum=1, round_timeout_seconds=5.0, outer_lr=0.5, codec="int8", rounds=2
        )
        assert (opened.run_id, opened.round, opened.resumed) == ("r1", 2, True)
        with pytest.raises(ValueError, match="codec 'fp16'"):
            await bridge.open_run(expected_workers=1, codec="fp16")
        servicer.watches = [
            [_round(0), _round(0, "a"), grpc.StatusCode.UNAVAILABLE],  # broken: watched again
            [_round(0, "a", "b"), _round(1, run_state=paramserver_pb2.RUN_STATE_FINISHED)],
        ]
        seen = [status async for status in bridge.watch_run("r1")]
        assert seen[1] == RunStatus("r1", 0, False, ("a",), 2, 2, RunState.OPEN)
        assert [(s.round, s.committed_workers, s.state, s.ended) for s in seen] == [
            (0, (), RunState.OPEN, False),
            (0, ("a",), RunState.OPEN, False),
            (0, ("a", "b"), RunState.OPEN, False),
            (1, (), RunState.FINISHED, True),
        ]
        assert seen[-1].round_closed
        servicer.watches = [[_round(0)]]
        servicer.failures = [(grpc.StatusCode.ABORTED, "WATCH_OVERFLOW")]
        with pytest.raises(BridgeError) as err:
            async for _ in bridge.watch_run():
                pass
        assert err.value.reason is BridgeReason.WATCH_OVERFLOW and err.value.method == "WatchRun"
        servicer.failures = [(grpc.StatusCode.UNAVAILABLE, "")]
        await bridge.close_run()
    methods = [m for m, _, _ in servicer.calls]
    assert methods == ["OpenRun", "WatchRun", "WatchRun", "WatchRun", "CloseRun", "CloseRun"]
    requests = [r for _, r, _ in servicer.calls]
    open_run = requests[0]
    assert (open_run.run_id, open_run.expected_workers, open_run.quorum, open_run.rounds) == ("", 2, 1, 2)
    assert (open_run.round_timeout_seconds, open_run.outer_lr, open_run.outer_momentum) == (5.0, 0.5, 0.0)
    assert open_run.HasField("outer_lr") and not open_run.HasField("outer_momentum")  # left out: the default
    assert open_run.codec == 3  # tendril.tensor.v1.CODEC_INT8
    assert requests[1].run_id == "r1" and requests[2].run_id == "r1" and requests[3].run_id == ""


def test_from_env(tmp_path: Path) -> None:
    job_json = tmp_path / "job.json"
    job_json.write_text(
        json.dumps({"job_id": "j9", "work_dir": str(tmp_path), "socket_path": str(tmp_path / "b.sock")})
    )
    client = BridgeClient.from_env({"TENDRIL_BRIDGE_TOKEN": TOKEN, "JOB_JSON": str(job_json)})
    assert client.job is not None and client.job.job_id == "j9"
    assert client.socket_path == tmp_path / "b.sock" and client.work_dir == tmp_path
    env = {"SOCKET_PATH": "/s/bridge.sock", "TENDRIL_BRIDGE_TOKEN": TOKEN, "WORK_DIR": str(tmp_path / "w")}
    plain = BridgeClient.from_env(env)
    assert plain.job is None and plain.socket_path == Path("/s/bridge.sock") and plain.work_dir == tmp_path / "w"
    assert BridgeClient.from_env(env, socket_path="/t.sock").socket_path == Path("/t.sock")
    with pytest.raises(ExecutorEnvError, match="TENDRIL_BRIDGE_TOKEN is not set"):
        BridgeClient.from_env({"SOCKET_PATH": "/s"})
    with pytest.raises(ExecutorEnvError, match="SOCKET_PATH and TENDRIL_BRIDGE_TOKEN are not set"):
        BridgeClient.from_env({})


def _real_job(tmp_path: Path) -> JobDescriptor:
    work = tmp_path / "job-s1"
    work.mkdir(mode=0o700)
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir()
    return JobDescriptor(
        job_id="s1",
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("example", "echo"),
        config={"greeting": "hi"},
        work_dir=work,
        socket_path=work / "bridge.sock",
    )


async def test_the_real_bridge_answers_declared_reasons(tmp_path: Path) -> None:
    job = _real_job(tmp_path)
    bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address="127.0.0.1:1")
    await bridge.start()
    try:
        async with BridgeClient(job.socket_path, "wrong", retry_policy=FAST) as intruder:
            with pytest.raises(BridgeError) as err:
                await intruder.get_job()
            assert err.value.code is grpc.StatusCode.UNAUTHENTICATED
            assert err.value.reason is BridgeReason.BAD_BRIDGE_TOKEN
        async with BridgeClient(job.socket_path, TOKEN, retry_policy=FAST) as client:
            assert client.work_dir == job.work_dir
            got = await client.get_job()
            assert got.job_id == "s1" and got.config == {"greeting": "hi"} and got.work_dir == job.work_dir
            cases = [
                (client.send_update("../outside", 0, 1.0), BridgeReason.PATH_NOT_CONFINED),
                (client.send_update("updates/none.safetensors", 0, 1.0), BridgeReason.FILE_NOT_FOUND),
                (client.fetch_parameters(), BridgeReason.JOB_CONFIG_MISSING),
                (client.receive_update(0, timeout_seconds=-1), BridgeReason.BAD_TIMEOUT),
                (client.next_slice(), BridgeReason.NO_SCHEDULER),
                (client.report_progress(ProgressKind.BATCH, 0, batch_size=1), BridgeReason.NO_SCHEDULER),
                (client.fetch_resource("ftp://host/x"), BridgeReason.BAD_URI),
                (client.open_run(expected_workers=1), BridgeReason.NOT_AGGREGATE_JOB),
                (client.close_run(), BridgeReason.NOT_AGGREGATE_JOB),
            ]
            for call, reason in cases:
                with pytest.raises(BridgeError) as err:
                    await call
                assert err.value.reason is reason, err.value
    finally:
        await bridge.stop()


def test_every_progress_kind_is_its_proto_value() -> None:
    for kind in ProgressKind:
        assert kind.to_proto() == scheduler_pb2.ProgressKind.Value(f"PROGRESS_KIND_{kind.name}")
    named = {v.name for v in scheduler_pb2.ProgressKind.DESCRIPTOR.values} - {"PROGRESS_KIND_UNSPECIFIED"}
    assert named == {f"PROGRESS_KIND_{kind.name}" for kind in ProgressKind}


async def test_a_batch_report_may_cover_several_batches(fake: tuple[FakeBridge, Path]) -> None:
    servicer, socket = fake
    async with BridgeClient(socket, TOKEN, retry_policy=FAST) as bridge:
        await bridge.report_progress(
            ProgressKind.BATCH, 2, batch_size=40, batch_seconds=0.5, metrics={"loss": 2.5}, batches=5
        )
        await bridge.report_progress(ProgressKind.BATCH, 2, batch_size=8, batch_seconds=0.1)
        with pytest.raises(ValueError, match="batches must be >= 1"):
            await bridge.report_progress(ProgressKind.BATCH, 2, batch_size=8, batches=0)
    progress = [r.progress for m, r, _ in servicer.calls if m == "ReportProgress"]
    assert [(p.batches, p.batch_size, p.batch_seconds) for p in progress] == [(5, 40, 0.5), (0, 8, 0.1)]
