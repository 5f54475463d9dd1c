"""Bridge data-plane RPCs against a real ParameterServer: θ0, an update, the outer step, θ1;
the run RPCs of an "aggregate" job (OpenRun, WatchRun, CloseRun) with their authority rule; an
update lost in a restart of the parameter server, sent again by the bridge.

Both run in this process (the ParameterServer on loopback TCP, the bridge on its Unix
socket); the executor side is a plain gRPC client with the job's token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tendril.bridge.auth import bearer
from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.server import JobBridge
from tendril.core import tensorstream
from tendril.core.channel import open_channel
from tendril.core.streaming import XXH3_128, digest_file
from tendril.paramserver.service import ParameterServerService
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_proto.tensor.v1 import tensor_pb2
from tendril_sdk import BridgeClient, BridgeError, BridgeReason, RunState
from tendril_sdk.job import ExecutorRef, JobDescriptor
from tests.procs import kill_group, running, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

RUN = "run-bridge"
TOKEN = "bridge-token"
LR, MOMENTUM = 0.7, 0.9


@contextlib.asynccontextmanager
async def serving_runs(
    tmp_path: Path, *run_ids: str, codec: tensor_pb2.Codec = tensor_pb2.CODEC_FP32
) -> AsyncIterator[str]:
    """A ParameterServer in this process with one run per id open (1 worker, 2 rounds, LR/MOMENTUM,
    ``codec``); its address."""
    service = ParameterServerService(worker_config(tmp_path / "ps"))
    await service.start()
    try:
        async with open_channel(service.address, peer_id="sched") as channel:
            stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
            for run_id in run_ids:
                await stub.OpenJob(
                    paramserver_pb2.OpenJobRequest(
                        run_id=run_id,
                        expected_workers=1,
                        quorum=1,
                        round_timeout_seconds=30,
                        outer_lr=LR,
                        outer_momentum=MOMENTUM,
                        codec=codec,
                        rounds=2,
                    )
                )
        yield service.address
    finally:
        await service.stop()


def job_work_dir(tmp_path: Path, job_id: str = "t1") -> Path:
    """A job's work dir as JobService makes it (mode 0700, the bridge's subfolders)."""
    work = tmp_path / f"job-{job_id}"
    work.mkdir(mode=0o700)
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir()
    return work


@pytest.fixture
async def paramserver(tmp_path: Path) -> AsyncIterator[str]:
    async with serving_runs(tmp_path, RUN) as address:
        yield address


def _train_job(work: Path, paramserver: str) -> JobDescriptor:
    """A DiLoCo training job of RUN (fp32) in ``work``."""
    return JobDescriptor(
        job_id="t1",
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("train", "diloco"),
        config={"parameter_server": paramserver, "run_id": RUN, "codec": "fp32", "round_timeout_seconds": 30},
        work_dir=work,
        socket_path=work / "bridge.sock",
    )


@contextlib.asynccontextmanager
async def _bridge_client(job: JobDescriptor, paramserver: str, **options: Any) -> AsyncIterator[BridgeClient]:
    """A started JobBridge of ``job`` (``options``: its other arguments) and a client of it; the
    bridge stops when the block ends."""
    bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=paramserver, **options)
    await bridge.start()
    try:
        async with BridgeClient(job.socket_path, TOKEN, job=job) as client:
            yield client
    finally:
        await bridge.stop()


async def test_publish_send_receive_fetch(tmp_path: Path, paramserver: str) -> None:
    work = job_work_dir(tmp_path)
    theta0 = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, dtype=np.float32)}
    delta = {"w": np.full((3, 4), 0.5, dtype=np.float32), "b": np.full(5, -1.0, dtype=np.float32)}
    save_file(theta0, str(work / "params" / "theta0.safetensors"))
    save_file(delta, str(work / "updates" / "delta.safetensors"))
    job = _train_job(work, paramserver)
    bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=paramserver)
    await bridge.start()
    try:
        async with open_channel(f"unix:{job.socket_path}") as channel:
            stub = bridge_pb2_grpc.JobBridgeServiceStub(channel)
            auth = bearer(TOKEN)
            published = await stub.PublishParameters(
                bridge_pb2.PublishParametersRequest(path="params/theta0.safetensors"), metadata=auth, timeout=60
            )
            assert published.accepted and published.round == 0
            sent = await stub.SendUpdate(
                bridge_pb2.SendUpdateRequest(path="updates/delta.safetensors", round=0, weight=8),
                metadata=auth,
                timeout=60,
            )
            assert sent.bytes_sent >= (12 + 5) * 4
            got = await stub.ReceiveUpdate(bridge_pb2.ReceiveUpdateRequest(round=0), metadata=auth, timeout=60)
            assert got.path == "updates/round-0.safetensors" and got.contributors == 1
            update = load_file(str(work / got.path))
            # First Nesterov step (torch.optim.SGD semantics): buf = g, u = -lr * (g + momentum * g).
            for name, g in delta.items():
                np.testing.assert_allclose(update[name], -LR * (g + MOMENTUM * g), rtol=1e-6)
            fetched = await stub.FetchParameters(bridge_pb2.FetchParametersRequest(), metadata=auth, timeout=60)
            assert fetched.path == "params/current.safetensors" and fetched.round == 1
            theta1 = load_file(str(work / fetched.path))
            for name in theta0:
                np.testing.assert_allclose(theta1[name], theta0[name] + update[name], rtol=1e-6)
            escape = None
            try:
                await stub.ReceiveUpdate(
                    bridge_pb2.ReceiveUpdateRequest(round=0, path="../outside.safetensors"), metadata=auth
                )
            except grpc.aio.AioRpcError as exc:
                escape = exc.code()
            assert escape == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await bridge.stop()
    assert not (tmp_path / "outside.safetensors").exists()
    assert not [p for p in work.rglob("*.part")], "no half-written files"


async def test_receive_update_with_reuse_files_receives_into_kept_files_in_turn(
    memory_dir: Path, paramserver: str
) -> None:
    """reuse_files, with the work dir in memory: the update lands in a kept file of
    updates/.reused/ (linked at the path, whole), never the one of the call before, the same
    inode again once its path is gone."""
    work = job_work_dir(memory_dir)
    save_file({"w": np.arange(12, dtype=np.float32)}, str(work / "params" / "theta0.safetensors"))
    save_file({"w": np.full(12, 0.5, dtype=np.float32)}, str(work / "updates" / "delta.safetensors"))
    job = _train_job(work, paramserver)
    async with _bridge_client(job, paramserver) as client:
        await client.publish_parameters("params/theta0.safetensors")
        await client.send_update("updates/delta.safetensors", 0, 1.0)
        fresh = await client.receive_update(0, path="updates/fresh.safetensors")
        inodes = []
        for k in range(4):
            got = await client.receive_update(0, path=f"updates/u{k}.safetensors", reuse_files=True)
            assert got.path.read_bytes() == fresh.path.read_bytes()
            kept = work / "updates" / ".reused" / f"update-{k % 2}"
            assert os.stat(got.path).st_ino == os.stat(kept).st_ino and os.stat(kept).st_nlink == 2
            inodes.append(os.stat(kept).st_ino)
            got.path.unlink()  # the executor is done with it
        assert inodes[0] == inodes[2] and inodes[1] == inodes[3] and inodes[0] != inodes[1]
        assert os.stat(fresh.path).st_nlink == 1  # without reuse_files: a file of its own
    assert not [p for p in work.rglob("*.part")] and not [p for p in work.rglob("*.link")]


async def test_send_update_takes_the_writers_digest_and_the_server_checks_it(tmp_path: Path, paramserver: str) -> None:
    """SendUpdate's digest: a malformed one is refused before anything is sent (BAD_DIGEST), a
    wrong one fails the push at the server (DATA_LOSS), and nothing of it counted; the right one
    goes through."""
    work = job_work_dir(tmp_path)
    save_file({"w": np.arange(12, dtype=np.float32)}, str(work / "params" / "theta0.safetensors"))
    delta = work / "updates" / "delta.safetensors"
    save_file({"w": np.full(12, 0.5, dtype=np.float32)}, str(delta))
    right = f"xxh3-128:{digest_file(delta, XXH3_128).hexdigest()}"
    job = _train_job(work, paramserver)
    async with _bridge_client(job, paramserver) as client:
        await client.publish_parameters("params/theta0.safetensors")
        with pytest.raises(ValueError, match="algorithm"):
            await client.send_update("updates/delta.safetensors", 0, 1.0, digest="md5:00")
        request = bridge_pb2.SendUpdateRequest(path="updates/delta.safetensors", round=0, weight=1.0)
        request.digest.algorithm = tensor_pb2.DIGEST_ALGORITHM_XXH3_128
        request.digest.hex = "not hex"
        with pytest.raises(BridgeError) as bad:
            await client._call("SendUpdate", client._stub.SendUpdate, request, timeout=30)
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and bad.value.reason == BridgeReason.BAD_DIGEST
        wrong = "xxh3-128:" + "0" * 32
        with pytest.raises(BridgeError) as lost:
            await client.send_update("updates/delta.safetensors", 0, 1.0, digest=wrong)
        assert lost.value.code == grpc.StatusCode.DATA_LOSS, lost.value
        await client.send_update("updates/delta.safetensors", 0, 1.0, digest=right)
        got = await client.receive_update(0)
        assert got.contributors == 1  # the push with the wrong digest never counted


async def test_an_int8_job_hands_off_through_kept_files_only(tmp_path: Path, memory_dir: Path) -> None:
    """With int8 and handoff/ in memory, every model-sized file of a round is a kept one: Δ is
    encoded into a kept payload file, the update received into one and decoded into another
    (linked at the path), round after round; what the executor reads is what a fresh pull stores."""
    work = _handoff_work(tmp_path, memory_dir, 1 << 20)
    async with serving_runs(tmp_path, RUN, codec=tensor_pb2.CODEC_INT8) as paramserver:
        job = _train_job(work, paramserver)
        job.config["codec"] = "int8"
        async with _bridge_client(job, paramserver, handoff=memory_dir) as client:
            await client.publish_parameters("params/theta0.safetensors")
            await client.send_update("handoff/delta.safetensors", 0, 1.0)
            fresh = await client.receive_update(0, path="updates/fresh.safetensors")
            for k in range(3):
                got = await client.receive_update(0, path=f"handoff/u{k}.safetensors", reuse_files=True)
                assert (memory_dir / f"u{k}.safetensors").read_bytes() == fresh.path.read_bytes()
                assert got.path.stat().st_nlink == 2  # a link of a kept file
                (memory_dir / f"u{k}.safetensors").unlink()
    kept = sorted(p.name for p in (memory_dir / ".reused").iterdir())
    assert kept == [
        "payload-int8-0",
        "payload-int8-1",
        "received-int8-0",
        "received-int8-1",
        "update-0",
        "update-1",
    ], kept
    assert not _matching(memory_dir, "*.part") and not _matching(memory_dir, "*.payload")


def _handoff_work(tmp_path: Path, memory_dir: Path, n: int) -> Path:
    """A job's work dir with handoff/ linked to ``memory_dir`` (as JobService makes it), θ0 of
    ``n`` fp32 values in params/ and a Δ of as many in handoff/."""
    work = job_work_dir(tmp_path)
    (work / "handoff").symlink_to(memory_dir, target_is_directory=True)
    save_file({"w": np.arange(n, dtype=np.float32) / n}, str(work / "params" / "theta0.safetensors"))
    save_file({"w": np.full(n, 0.25, dtype=np.float32)}, str(memory_dir / "delta.safetensors"))
    return work


def _matching(folder: Path, pattern: str) -> list[Path]:
    return list(folder.rglob(pattern))


async def test_a_job_on_disk_hands_off_through_its_folder_in_memory(
    tmp_path: Path, memory_dir: Path, paramserver: str
) -> None:
    """The work dir on a disk, handoff/ linked to the job's folder in memory (as JobService makes
    it): Δ is sent from handoff/ (its copy for a resend kept beside it, a hard link), the update
    of several MiB is received in place into kept files of handoff/.reused/ (straight into the
    mapping the bridge keeps of each), whole and the same as a fresh pull, round after round."""
    work = _handoff_work(tmp_path, memory_dir, 3 * 1024 * 1024 // 2)  # 6 MiB of fp32: more than one piece of a pull
    job = _train_job(work, paramserver)
    async with _bridge_client(job, paramserver, handoff=memory_dir) as client:
        await client.publish_parameters("params/theta0.safetensors")
        await client.send_update("handoff/delta.safetensors", 0, 1.0)
        sent = memory_dir / ".sent" / "round-0.safetensors"
        assert os.stat(sent).st_ino == os.stat(memory_dir / "delta.safetensors").st_ino
        fresh = await client.receive_update(0, path="updates/fresh.safetensors")
        inodes = []
        for k in range(4):
            got = await client.receive_update(0, path=f"handoff/u{k}.safetensors", reuse_files=True)
            assert got.path == work / "handoff" / f"u{k}.safetensors"
            assert (memory_dir / f"u{k}.safetensors").read_bytes() == fresh.path.read_bytes()
            inodes.append(os.stat(memory_dir / ".reused" / f"update-{k % 2}").st_ino)
            (memory_dir / f"u{k}.safetensors").unlink()
        assert inodes[0] == inodes[2] and inodes[1] == inodes[3] and inodes[0] != inodes[1]
    assert not _matching(memory_dir, "*.part") and not _matching(memory_dir, "*.link")


def _bridge_job(tmp_path: Path, job_id: str, executor: ExecutorRef, **config: object) -> JobDescriptor:
    work = job_work_dir(tmp_path, job_id)
    return JobDescriptor(
        job_id=job_id,
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=executor,
        config=config,
        work_dir=work,
        socket_path=work / "bridge.sock",
    )


async def test_an_aggregate_job_opens_watches_and_closes_only_its_own_run(tmp_path: Path, paramserver: str) -> None:
    """OpenRun/WatchRun/CloseRun reach this worker's parameter server, for the job's own run only."""
    aggregate = ExecutorRef("aggregate", "diloco")
    jobs = {
        "agg": _bridge_job(tmp_path, "agg", aggregate, run_id="agg-run", expected_workers=2),
        "train": _bridge_job(tmp_path, "train", ExecutorRef("train", "diloco"), run_id="agg-run"),
        "no-run": _bridge_job(tmp_path, "no-run", aggregate),
    }
    bridges = [
        JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=paramserver)
        for job in jobs.values()
    ]
    for bridge in bridges:
        await bridge.start()
    try:
        async with (
            BridgeClient(jobs["agg"].socket_path, TOKEN, job=jobs["agg"]) as agg,
            BridgeClient(jobs["train"].socket_path, TOKEN, job=jobs["train"]) as train,
            BridgeClient(jobs["no-run"].socket_path, TOKEN, job=jobs["no-run"]) as no_run,
        ):
            with pytest.raises(BridgeError) as not_open:
                await anext(aiter(agg.watch_run()))
            assert (
                not_open.value.code is grpc.StatusCode.NOT_FOUND and not_open.value.reason is BridgeReason.RUN_NOT_OPEN
            )
            with pytest.raises(BridgeError) as bad:
                await agg.open_run(expected_workers=2, quorum=3)
            assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert bad.value.reason is BridgeReason.BAD_RUN_CONFIG and "quorum" in bad.value.message

            opened = await agg.open_run(expected_workers=2, quorum=1, rounds=3, codec="bf16")
            assert (opened.run_id, opened.round, opened.resumed) == ("agg-run", 0, False)
            watch = agg.watch_run()
            first = await anext(watch)
            assert (first.run_id, first.round, first.expected_workers, first.rounds) == ("agg-run", 0, 2, 3)
            assert first.state is RunState.OPEN and not first.ended

            # Authority: another run, another class of job, a job without a run: refused, nothing changes.
            refusals = [
                (agg.open_run(expected_workers=1, run_id=RUN), BridgeReason.RUN_NOT_OWNED),
                (agg.close_run(RUN), BridgeReason.RUN_NOT_OWNED),
                (anext(aiter(agg.watch_run(RUN))), BridgeReason.RUN_NOT_OWNED),
                (train.open_run(expected_workers=1), BridgeReason.NOT_AGGREGATE_JOB),
                (train.close_run(), BridgeReason.NOT_AGGREGATE_JOB),
                (anext(aiter(train.watch_run())), BridgeReason.NOT_AGGREGATE_JOB),
            ]
            for call, reason in refusals:
                with pytest.raises(BridgeError) as refused:
                    await call
                assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED and refused.value.reason is reason
            with pytest.raises(BridgeError) as missing:
                await no_run.open_run(expected_workers=1)
            assert missing.value.code is grpc.StatusCode.FAILED_PRECONDITION
            assert missing.value.reason is BridgeReason.JOB_CONFIG_MISSING

            async with open_channel(paramserver, peer_id="sched") as channel:
                stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
                view = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id=RUN))
                assert view.state == paramserver_pb2.ROUND_STATE_OPEN  # the other run was not closed

            await agg.close_run()
            closed = await anext(watch)
            assert closed.state is RunState.CLOSED and closed.ended
            assert [s async for s in watch] == []  # CLOSED ends the stream
    finally:
        for bridge in bridges:
            await bridge.stop()


async def test_a_restarted_parameter_server_gets_the_lost_update_again(tmp_path: Path) -> None:
    """A real PS process killed after a worker's push committed, restarted: the worker's ReceiveUpdate
    is told PUSH_LOST, its bridge sends the update again from its copy, and the round closes."""
    config = worker_config(tmp_path / "ps")
    address = config.listen("paramserver")
    job = _bridge_job(
        tmp_path, "lost", ExecutorRef("train", "diloco"), parameter_server=address, run_id="lost", codec="fp32"
    )
    theta0 = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, dtype=np.float32)}
    save_file(theta0, str(job.work_dir / "params" / "theta0.safetensors"))
    delta = job.work_dir / "updates" / "delta.safetensors"
    save_file({n: np.full(v.shape, 0.5, dtype=np.float32) for n, v in theta0.items()}, str(delta))
    other = tmp_path / "other.safetensors"
    save_file({n: np.full(v.shape, -0.25, dtype=np.float32) for n, v in theta0.items()}, str(other))
    bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=address)
    first = spawn_service("paramserver", config, tmp_path, name="ps-first")
    await bridge.start()
    try:
        async with BridgeClient(job.socket_path, TOKEN, job=job) as client:
            with running(first):
                await wait_serving(address)
                async with open_channel(address, peer_id="sched") as channel:
                    await paramserver_pb2_grpc.ParameterServerServiceStub(channel).OpenJob(
                        paramserver_pb2.OpenJobRequest(run_id="lost", expected_workers=2, quorum=2, rounds=2)
                    )
                assert (await client.publish_parameters("params/theta0.safetensors")).accepted
                await client.send_update("updates/delta.safetensors", 0, 4.0)
                delta.unlink()  # as the DiLoCo executor does once SendUpdate returned
                kill_group(first)  # SIGKILL: the committed push was in memory only
            second = spawn_service("paramserver", config, tmp_path, name="ps-second")
            with running(second):
                await wait_serving(address)
                receiving = asyncio.create_task(client.receive_update(0, timeout_seconds=60))
                async with open_channel(address, peer_id="sched") as channel:
                    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
                    view = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="lost"))
                    for _ in range(600):  # the bridge was told PUSH_LOST and sent the update again
                        if list(view.committed_workers) == ["worker-test"]:
                            break
                        await asyncio.sleep(0.05)
                        view = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="lost"))
                    assert (view.round, list(view.committed_workers)) == (0, ["worker-test"])
                    await tensorstream.push_update(
                        channel, other, run_id="lost", round=0, worker_id="other", weight=4.0, codec="fp32"
                    )
                received = await asyncio.wait_for(receiving, 60)
                assert received.contributors == 2
                update = load_file(str(received.path))
                g = (0.5 * 4 + -0.25 * 4) / 8  # both pushes count, the lost one once
                np.testing.assert_allclose(update["w"], np.full((3, 4), -LR * (g + MOMENTUM * g)), atol=1e-6)
                assert not list((job.work_dir / ".sent").iterdir())  # the copy went with its round
    finally:
        await bridge.stop()


@pytest.mark.parametrize("copy_kept", [True, False])
async def test_a_rebuilt_bridge_resends_an_update_its_predecessor_sent(tmp_path: Path, copy_kept: bool) -> None:
    """The bridge that sent round 0's update dies with its JobService; the one rebuilt for the job
    (same descriptor, token and socket) resends it when the parameter server lost it too.

    copy_kept: the first bridge kept its copy under .sent/, the rebuilt one finds it there. Else it
    died between the push's commit and the copy: the executor's retried SendUpdate is answered
    ALREADY_COMMITTED, and the rebuilt bridge keeps the copy then.
    """
    config = worker_config(tmp_path / "ps")
    address = config.listen("paramserver")
    job = _bridge_job(
        tmp_path, "again", ExecutorRef("train", "diloco"), parameter_server=address, run_id="again", codec="fp32"
    )
    theta0 = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, dtype=np.float32)}
    save_file(theta0, str(job.work_dir / "params" / "theta0.safetensors"))
    delta = job.work_dir / "updates" / "delta.safetensors"
    save_file({n: np.full(v.shape, 0.5, dtype=np.float32) for n, v in theta0.items()}, str(delta))
    other = tmp_path / "other.safetensors"
    save_file({n: np.full(v.shape, -0.25, dtype=np.float32) for n, v in theta0.items()}, str(other))
    first_bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=address)
    rebuilt: JobBridge | None = None
    first = spawn_service("paramserver", config, tmp_path, name="ps-first")
    await first_bridge.start()
    try:
        async with BridgeClient(job.socket_path, TOKEN, job=job) as client:
            with running(first):
                await wait_serving(address)
                async with open_channel(address, peer_id="sched") as channel:
                    await paramserver_pb2_grpc.ParameterServerServiceStub(channel).OpenJob(
                        paramserver_pb2.OpenJobRequest(run_id="again", expected_workers=2, quorum=2, rounds=2)
                    )
                assert (await client.publish_parameters("params/theta0.safetensors")).accepted
                await client.send_update("updates/delta.safetensors", 0, 4.0)
                await first_bridge.server.stop(grace=None)  # its JobService died: nothing else happens
                if not copy_kept:
                    for kept in (job.work_dir / ".sent").iterdir():
                        kept.unlink()
                rebuilt = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=address)
                await rebuilt.start()
                if not copy_kept:
                    with pytest.raises(BridgeError) as again:
                        await client.send_update("updates/delta.safetensors", 0, 4.0)
                    assert again.value.reason == BridgeReason.ALREADY_COMMITTED
                assert sorted(p.name for p in (job.work_dir / ".sent").iterdir()) == [
                    "round-0.json",
                    "round-0.safetensors",
                ]
                delta.unlink()  # as the DiLoCo executor does once SendUpdate returned
                kill_group(first)  # SIGKILL: the committed push was in memory only
            second = spawn_service("paramserver", config, tmp_path, name="ps-second")
            with running(second):
                await wait_serving(address)
                receiving = asyncio.create_task(client.receive_update(0, timeout_seconds=60))
                async with open_channel(address, peer_id="sched") as channel:
                    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
                    for _ in range(600):  # the rebuilt bridge was told PUSH_LOST and sent the update again
                        view = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="again"))
                        if list(view.committed_workers) == ["worker-test"]:
                            break
                        await asyncio.sleep(0.05)
                    assert (view.round, list(view.committed_workers)) == (0, ["worker-test"])
                    await tensorstream.push_update(
                        channel, other, run_id="again", round=0, worker_id="other", weight=4.0, codec="fp32"
                    )
                received = await asyncio.wait_for(receiving, 60)
                assert received.contributors == 2
                g = (0.5 * 4 + -0.25 * 4) / 8  # both pushes count, the lost one once
                update = load_file(str(received.path))
                np.testing.assert_allclose(update["w"], np.full((3, 4), -LR * (g + MOMENTUM * g)), atol=1e-6)
                assert not list((job.work_dir / ".sent").iterdir())
    finally:
        for bridge in (first_bridge, rebuilt):
            if bridge is not None:
                await bridge.stop()
