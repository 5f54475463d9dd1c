"""A real ParameterServer process: broken pushes leave no trace, quorum + timeout, late pushes, restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from safetensors.numpy import save_file

from tendril.core import tensorstream
from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind
from tendril.core.streaming import StreamInfo, chunk_ranges, header_message, mapped
from tendril.core.tensorstream import TensorStreamError, prepared_payload
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_proto.tensor.v1 import tensor_pb2
from tendril_sdk.errors import error_reason
from tendril_sdk.files import Reusable
from tests.procs import kill_group, running, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

SHAPES = {"h.0.w": (768, 1024), "h.0.b": (1024,)}  # 3 MiB of fp32: a few chunks


def _write(path: Path, seed: int, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    save_file({n: (rng.standard_normal(s) * scale).astype(np.float32) for n, s in SHAPES.items()}, str(path))
    return path


async def _open(channel: grpc.aio.Channel, run: str, theta: Path, **config: Any) -> paramserver_pb2.OpenJobResponse:
    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
    reply = await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id=run, **config))
    await tensorstream.push_parameters(channel, theta, run_id=run, worker_id="scheduler")
    return reply


async def _break_off(channel: grpc.aio.Channel, path: Path, *, run: str, worker: str, chunks: int) -> None:
    """Send the header and a few chunks, then drop the call as a dying worker would.

    Sent with the generated stub and protobuf messages: the server reads them as frames.
    """
    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
    with prepared_payload(path, "fp32") as payload, mapped(payload.path) as view:
        info = StreamInfo("broken-" + worker, run, 0, worker, 5.0, payload.layout, payload.digest)
        sent = asyncio.Event()

        async def requests() -> AsyncIterator[paramserver_pb2.PushUpdateRequest]:
            yield paramserver_pb2.PushUpdateRequest(message=tensor_pb2.StreamMessage(header=header_message(info)))
            for i, (offset, length) in enumerate(chunk_ranges(len(view))):
                if i == chunks:
                    sent.set()
                    await asyncio.Event().wait()  # hang: the call is cancelled from outside
                chunk = tensor_pb2.Chunk(offset=offset, data=bytes(view[offset : offset + length]))
                yield paramserver_pb2.PushUpdateRequest(message=tensor_pb2.StreamMessage(chunk=chunk))

        call = stub.PushUpdate(requests())
        await asyncio.wait_for(sent.wait(), 30)
        # Wait until the server has seen the push in flight, then cut it.
        await _until(lambda r: r.pushes_in_flight >= 1, stub, run)
        call.cancel()


async def _until(predicate: Any, stub: Any, run: str, timeout: float = 30.0) -> paramserver_pb2.GetRoundResponse:
    deadline = time.monotonic() + timeout
    while True:
        reply = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id=run))
        if predicate(reply):
            return reply
        assert time.monotonic() < deadline, f"GetRound never matched; last: {reply}"
        await asyncio.sleep(0.05)


async def test_broken_pusher_leaves_no_trace_and_quorum_closes(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    proc = spawn_service("paramserver", config, tmp_path)
    with running(proc):
        address = config.listen("paramserver")
        await wait_serving(address)
        theta = _write(tmp_path / "theta.st", 0)
        deltas = {w: _write(tmp_path / f"{w}.st", i + 1, 1e-2) for i, w in enumerate(["w1", "w2", "w3"])}
        async with open_channel(address, peer_id="tester") as channel:
            stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
            await _open(channel, "three", theta, expected_workers=3, quorum=2, round_timeout_seconds=1.5, rounds=3)
            await _open(channel, "two", theta, expected_workers=2, quorum=2, rounds=3)
            # "three": w3 breaks off mid-stream, w2 and w1 commit; the round closes by quorum.
            await _break_off(channel, deltas["w3"], run="three", worker="w3", chunks=2)
            for worker, weight in (("w2", 3.0), ("w1", 1.0)):
                await tensorstream.push_update(
                    channel, deltas[worker], run_id="three", round=0, worker_id=worker, weight=weight, codec="fp32"
                )
            still_open = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="three"))
            assert still_open.round == 0 and list(still_open.committed_workers) == ["w1", "w2"]
            # "two": the same two workers alone, committed in the same order (the sum follows it).
            for worker, weight in (("w2", 3.0), ("w1", 1.0)):
                await tensorstream.push_update(
                    channel, deltas[worker], run_id="two", round=0, worker_id=worker, weight=weight, codec="fp32"
                )
            results = {}
            for run in ("three", "two"):
                got, contributors = await tensorstream.pull_update(
                    channel, run_id=run, round=0, dest=tmp_path / f"{run}.update", codec="fp32", timeout=30
                )
                assert contributors == 2 and got > 0
                await tensorstream.pull_parameters(channel, run_id=run, dest=tmp_path / f"{run}.theta")
                results[run] = (tmp_path / f"{run}.update").read_bytes(), (tmp_path / f"{run}.theta").read_bytes()
            assert results["three"] == results["two"]  # bit-identical: the broken push left no trace
            closed = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="three"))
            assert closed.round == 1 and closed.state == paramserver_pb2.ROUND_STATE_OPEN
            assert closed.pushes_in_flight == 0
            # The worker that broke off comes back late: told which round is open.
            with pytest.raises(TensorStreamError) as late:
                await tensorstream.push_update(
                    channel, deltas["w3"], run_id="three", round=0, worker_id="w3", weight=5.0, codec="int8"
                )
            assert late.value.kind is ErrorKind.FAILED_PRECONDITION
            assert "round 0 of run three is closed; round 1 is open" in late.value.message
            await tensorstream.push_update(
                channel, deltas["w1"], run_id="three", round=1, worker_id="w1", weight=1.0, codec="bf16"
            )
            with pytest.raises(TensorStreamError) as duplicate:
                await tensorstream.push_update(
                    channel, deltas["w1"], run_id="three", round=1, worker_id="w1", weight=1.0, codec="bf16"
                )
            assert duplicate.value.kind is ErrorKind.ALREADY_EXISTS
        kill_group(proc, signal.SIGTERM)
        assert proc.returncode == 0
    # Pushes never touch the disk: a round leaves θ, the momentum buffer, the state, commit records.
    saved = {p.name for p in (tmp_path / "state" / "paramserver").rglob("*") if p.is_file()}
    assert {n for n in saved if not n.endswith(".json")} == {
        "theta-1.safetensors",
        "momentum-1.safetensors",
    }


async def test_restart_resumes_round_and_state(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    address = config.listen("paramserver")
    theta = _write(tmp_path / "theta.st", 0)
    deltas = [_write(tmp_path / f"d{i}.st", 10 + i, 1e-2) for i in range(4)]
    first = spawn_service("paramserver", config, tmp_path, name="ps-first")
    with running(first):
        await wait_serving(address)
        async with open_channel(address, peer_id="tester") as channel:
            reply = await _open(channel, "run", theta, expected_workers=2, quorum=2, rounds=4, codec=2)
            assert (reply.round, reply.resumed) == (0, False)
            for i, worker in enumerate(["a", "b"]):
                await tensorstream.push_update(
                    channel, deltas[i], run_id="run", round=0, worker_id=worker, weight=1.0, codec="int8"
                )
            await tensorstream.pull_update(channel, run_id="run", round=0, dest=tmp_path / "u0", codec="bf16")
            await tensorstream.push_update(
                channel, deltas[2], run_id="run", round=1, worker_id="a", weight=2.0, codec="fp32"
            )
            await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta1.before")
        kill_group(first)  # SIGKILL: no graceful stop
    second = spawn_service("paramserver", config, tmp_path, name="ps-second")
    with running(second):
        await wait_serving(address)
        async with open_channel(address, peer_id="tester") as channel:
            stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
            view = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="run"))
            # The commit lived in memory: it is gone, and "a" is among the workers known.
            assert view.round == 1 and list(view.committed_workers) == [] and "a" in view.expected_workers
            reply = await stub.OpenJob(
                paramserver_pb2.OpenJobRequest(run_id="run", expected_workers=2, quorum=2, rounds=4, codec=2)
            )
            assert (reply.round, reply.resumed) == (1, True)
            assert await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta1.after") == 1
            assert (tmp_path / "theta1.after").read_bytes() == (tmp_path / "theta1.before").read_bytes()
            with pytest.raises(TensorStreamError) as gone:  # updates are not kept across a restart
                await tensorstream.pull_update(channel, run_id="run", round=0, dest=tmp_path / "u0.again", codec="bf16")
            assert (gone.value.kind, gone.value.reason) == (ErrorKind.FAILED_PRECONDITION, "UPDATE_GONE")
            with pytest.raises(TensorStreamError) as lost:  # "a" is told its push was lost...
                await tensorstream.pull_update(
                    channel, run_id="run", round=1, dest=tmp_path / "u1", codec="fp32", timeout=30, worker_id="a"
                )
            assert (lost.value.kind, lost.value.reason) == (ErrorKind.FAILED_PRECONDITION, "PUSH_LOST")
            for worker, delta, weight in (("a", deltas[2], 2.0), ("b", deltas[3], 1.0)):  # ...and pushes again
                await tensorstream.push_update(
                    channel, delta, run_id="run", round=1, worker_id=worker, weight=weight, codec="fp32"
                )
            _, contributors = await tensorstream.pull_update(
                channel, run_id="run", round=1, dest=tmp_path / "u1", codec="fp32", timeout=30
            )
            assert contributors == 2
            await stub.CloseJob(paramserver_pb2.CloseJobRequest(run_id="run"))
            with pytest.raises(TensorStreamError) as closed:
                await tensorstream.push_update(
                    channel, deltas[0], run_id="run", round=2, worker_id="a", weight=1.0, codec="fp32"
                )
            assert closed.value.reason == "RUN_CLOSED"
            assert await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "final") == 2
            await stub.CloseJob(paramserver_pb2.CloseJobRequest(run_id="run", purge=True))
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="run"))
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert not (tmp_path / "state" / "paramserver" / "run").exists()


async def test_bad_requests_get_clear_statuses(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    proc = spawn_service("paramserver", config, tmp_path)
    with running(proc):
        address = config.listen("paramserver")
        await wait_serving(address)
        async with open_channel(address, peer_id="tester") as channel:
            stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
            cases = [
                (paramserver_pb2.OpenJobRequest(run_id="r", expected_workers=0), "expected_workers"),
                (paramserver_pb2.OpenJobRequest(run_id="../x", expected_workers=1), "not a valid run id"),
                (paramserver_pb2.OpenJobRequest(run_id="r", expected_workers=1, quorum=2), "quorum"),
            ]
            for request, words in cases:
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await stub.OpenJob(request)
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in bad.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="nope"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "OpenJob" in missing.value.details()
            await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="r", expected_workers=1))
            with pytest.raises(TensorStreamError) as no_theta:
                await tensorstream.push_update(
                    channel, _write(tmp_path / "d", 1), run_id="r", round=0, worker_id="w", weight=1, codec="fp32"
                )
            assert no_theta.value.kind is ErrorKind.FAILED_PRECONDITION and "PushParameters" in no_theta.value.message
            chunk_first = stub.PushUpdate(
                iter([paramserver_pb2.PushUpdateRequest(message=tensor_pb2.StreamMessage(chunk=tensor_pb2.Chunk()))])
            )
            with pytest.raises(grpc.aio.AioRpcError) as no_header:
                await chunk_first
            assert no_header.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "start with a header" in no_header.value.details()
            # θ0 of integers: the header names a dtype its codec does not carry.
            ints = tensor_pb2.StreamHeader(
                stream_id="ints",
                job_id="r",
                worker_id="w",
                codec=tensor_pb2.CODEC_FP32,
                sha256="0" * 64,
                total_bytes=16 + 64,
                tensors=[tensor_pb2.TensorInfo(name="w", dtype="I32", shape=[4], begin=0, end=16)],
            )
            push_ints = stub.PushParameters(
                iter([paramserver_pb2.PushParametersRequest(message=tensor_pb2.StreamMessage(header=ints))])
            )
            with pytest.raises(grpc.aio.AioRpcError) as not_floats:
                await push_ints
            assert not_floats.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_reason(not_floats.value) == "BAD_HEADER" and "I32" in not_floats.value.details()


async def test_rejected_pushes_always_carry_the_servers_status(tmp_path: Path) -> None:
    """A push rejected at its header gets the server's status, never a client-side INTERNAL.

    Before the sender waited for the server's go-ahead, about 4 in 10 of these read as
    INTERNAL "Internal error from Core": the server ended the call while chunks were being
    written, and grpc.aio let the failed write replace the server's status.
    """
    config = worker_config(tmp_path)
    proc = spawn_service("paramserver", config, tmp_path)
    with running(proc):
        address = config.listen("paramserver")
        await wait_serving(address)
        theta = _write(tmp_path / "theta.st", 0)
        delta = _write(tmp_path / "delta.st", 1, 1e-2)
        async with open_channel(address, peer_id="tester") as channel:
            stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
            await _open(channel, "open", theta, expected_workers=2, quorum=2, rounds=3)
            await _open(channel, "shut", theta, expected_workers=2, quorum=2, rounds=3)
            await stub.CloseJob(paramserver_pb2.CloseJobRequest(run_id="shut"))
            cases = [("shut", 0, "RUN_CLOSED"), ("open", 1, "ROUND_NOT_OPEN")]
            for _ in range(15):
                for run, round, reason in cases:
                    with pytest.raises(TensorStreamError) as rejected:
                        await tensorstream.push_update(
                            channel, delta, run_id=run, round=round, worker_id="a", weight=1.0, codec="fp32"
                        )
                    assert (rejected.value.kind, rejected.value.reason) == (ErrorKind.FAILED_PRECONDITION, reason)
            # The go-ahead costs nothing to pushes that are taken.
            await tensorstream.push_update(
                channel, delta, run_id="open", round=0, worker_id="a", weight=1.0, codec="fp32"
            )
            view = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="open"))
            assert list(view.committed_workers) == ["a"] and view.pushes_in_flight == 0
            with pytest.raises(TensorStreamError) as again:
                await tensorstream.push_update(
                    channel, delta, run_id="open", round=0, worker_id="a", weight=1.0, codec="fp32"
                )
            assert (again.value.kind, again.value.reason) == (ErrorKind.ALREADY_EXISTS, "ALREADY_COMMITTED")


async def test_a_kept_file_is_received_into_in_place_and_linked_whole(tmp_path: Path, memory_dir: Path) -> None:
    """pull_update with ``scratch``: the update lands in the kept file (same inode, round after
    round), linked at ``dest``; a kept file that another name still links is never the next one;
    the updates are the same bytes a fresh pull gets."""
    config = worker_config(tmp_path)
    proc = spawn_service("paramserver", config, tmp_path)
    with running(proc):
        address = config.listen("paramserver")
        await wait_serving(address)
        theta = _write(tmp_path / "theta.st", 0)
        deltas = [_write(tmp_path / f"d{r}.st", 20 + r, 1e-2) for r in range(3)]
        kept = Reusable(memory_dir / "kept", "update")
        inodes = []
        async with open_channel(address, peer_id="tester") as channel:
            await _open(channel, "run", theta, expected_workers=1, quorum=1, rounds=3)
            for r, delta in enumerate(deltas):
                await tensorstream.push_update(
                    channel, delta, run_id="run", round=r, worker_id="w", weight=1.0, codec="fp32"
                )
                scratch = kept.take()
                assert scratch is not None
                dest = memory_dir / f"u{r}.st"
                await tensorstream.pull_update(
                    channel, run_id="run", round=r, dest=dest, codec="fp32", worker_id="w", scratch=scratch
                )
                again = tmp_path / f"u{r}.fresh"
                await tensorstream.pull_update(channel, run_id="run", round=r, dest=again, codec="fp32")
                assert dest.read_bytes() == again.read_bytes()
                assert os.stat(dest).st_ino == os.stat(scratch).st_ino and os.stat(dest).st_nlink == 2
                inodes.append(os.stat(scratch).st_ino)
                if r < 2:
                    dest.unlink()  # as the executor does once u is applied; u2 stays linked
            # Round 2 went into round 0's file (the same inode: its pages reused).
            assert inodes[2] == inodes[0] and inodes[1] != inodes[0]
            # Next comes round 1's file (u1 is gone); with it taken, round 0's is still linked as u2.
            assert kept.take() == kept.paths[1]
            assert kept.take() is None
            assert not [n for n in os.listdir(memory_dir) if n.startswith(".u")]  # no link or part file left
            # A kept file on another file system than dest: copied there, whole.
            scratch = Reusable(memory_dir / "other", "update").take()
            assert scratch is not None
            await tensorstream.pull_update(
                channel, run_id="run", round=2, dest=tmp_path / "u2.st", codec="fp32", scratch=scratch
            )
            assert (tmp_path / "u2.st").read_bytes() == (tmp_path / "u2.fresh").read_bytes()
        kill_group(proc, signal.SIGTERM)
