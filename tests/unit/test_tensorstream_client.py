"""The tensorstream client API against an in-process ParameterServer: codecs, cuts, errors."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tendril.core import dataplane, tensorstream
from tendril.core.channel import open_channel
from tendril.core.config import load_config
from tendril.core.errors import ErrorKind
from tendril.core.streaming import SHA256, Digest, StreamInfo, chunk_ranges, header_message
from tendril.core.tensorfile import read_layout
from tendril.core.tensorstream import TensorStreamError, prepared_payload
from tendril.paramserver.service import ParameterServerService, build
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_proto.tensor.v1 import tensor_pb2

SHAPES = {"h.w": (512, 300), "h.b": (300,)}  # 600 KiB of fp32: several 1 MiB-or-less chunks


def _write(path: Path, seed: int, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    save_file({n: (rng.standard_normal(s) * scale).astype(np.float32) for n, s in SHAPES.items()}, str(path))
    return path


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ParameterServerService]:
    config = load_config(
        None,
        env={},
        overrides={
            "worker.state_dir": str(tmp_path / "state"),
            "paramserver.listen": "127.0.0.1:0",
            "paramserver.data_listen": "127.0.0.1:0",
        },
    )
    service = build(config)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def _open(channel: grpc.aio.Channel, run: str, expected: int, tmp_path: Path) -> None:
    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
    await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id=run, expected_workers=expected, rounds=2))
    theta = _write(tmp_path / "theta.st", 0)
    assert await tensorstream.push_parameters(channel, theta, run_id=run, worker_id="w0") == (True, 0)
    assert await tensorstream.push_parameters(channel, theta, run_id=run, worker_id="w1") == (False, 0)


@pytest.mark.parametrize("codec", ["fp32", "bf16", "int8"])
async def test_push_and_pull_in_every_codec(server: ParameterServerService, tmp_path: Path, codec: str) -> None:
    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 2, tmp_path)
        sizes = []
        for i, worker in enumerate(["a", "b"]):
            delta = _write(tmp_path / f"{worker}.st", i + 1, 1e-2)
            sent = await tensorstream.push_update(
                channel, delta, run_id="run", round=0, worker_id=worker, weight=1.0 + i, codec=codec
            )
            sizes.append(sent)
        received, contributors = await tensorstream.pull_update(
            channel, run_id="run", round=0, dest=tmp_path / "u.st", codec=codec, timeout=30
        )
        fp32_bytes, _ = await tensorstream.pull_update(
            channel, run_id="run", round=0, dest=tmp_path / "u32.st", codec="fp32", timeout=30
        )
        round_ = await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta1.st")
    assert contributors == 2 and round_ == 1
    ratio = {"fp32": 1.0, "bf16": 0.5, "int8": 0.26}[codec]
    assert received <= fp32_bytes * ratio + 4096 and sizes[0] <= fp32_bytes * ratio + 4096
    update, exact = load_file(str(tmp_path / "u.st")), load_file(str(tmp_path / "u32.st"))
    theta0, theta1 = load_file(str(tmp_path / "theta.st")), load_file(str(tmp_path / "theta1.st"))
    for name in SHAPES:
        assert update[name].dtype == np.float32  # always stored as fp32
        np.testing.assert_array_equal(theta1[name], theta0[name] + exact[name])
        tolerance = {"fp32": 0.0, "bf16": 2.0**-8, "int8": 1 / 127}[codec] * np.abs(exact[name]).max()
        assert np.abs(update[name] - exact[name]).max() <= tolerance
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp payloads or partial files left


async def test_a_cut_push_resumes_where_the_server_is(server: ParameterServerService, tmp_path: Path) -> None:
    """The first attempt dies after three chunks (UNAVAILABLE); the retry resumes, nothing is resent twice."""
    async with open_channel(server.address, peer_id="tester") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="run", expected_workers=1))
        big = tmp_path / "big.st"  # 4 MiB: five chunks
        save_file({"x": np.ones(1 << 20, dtype=np.float32)}, str(big))
        assert (await tensorstream.push_parameters(channel, big, run_id="run", worker_id="w"))[0]
        push = tensorstream.push_call(channel, "PushUpdate", paramserver_pb2.PushUpdateResponse)
        calls: list[int] = []

        async def flaky(requests: AsyncIterator[Any]) -> Any:
            calls.append(0)
            if len(calls) > 1:
                return await push(requests)

            async def first_three() -> AsyncIterator[Any]:
                count = 0
                async for request in requests:
                    yield request
                    count += 1
                    if count == 4:  # header + 3 chunks
                        return

            response = await push(first_three())
            assert not response.committed and response.received_bytes > 0
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "cut")

        with prepared_payload(big, "fp32") as payload:
            info = StreamInfo(uuid.uuid4().hex, "run", 0, "w", 1.0, payload.layout, payload.digest)
            response, sent = await tensorstream._push_stream(
                flaky,
                info,
                payload.path,
                resumable=True,
                what="test push",
            )
        assert response.committed and response.contributors == 1
        # Attempt 1 sent 3 chunks, attempt 2 offered to go on from there: nothing was sent twice.
        assert len(calls) >= 2 and sent == payload.layout.total_bytes


async def test_errors_carry_the_servers_status(server: ParameterServerService, tmp_path: Path) -> None:
    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 1, tmp_path)
        delta = _write(tmp_path / "d.st", 4, 1e-2)
        await tensorstream.push_update(channel, delta, run_id="run", round=0, worker_id="a", weight=1, codec="bf16")
        with pytest.raises(TensorStreamError) as late:
            await tensorstream.push_update(channel, delta, run_id="run", round=0, worker_id="b", weight=1, codec="fp32")
        assert late.value.kind is ErrorKind.FAILED_PRECONDITION and late.value.reason == "ROUND_CLOSED"
        assert "round 1 is open" in late.value.message
        with pytest.raises(TensorStreamError) as gone:
            await tensorstream.push_update(
                channel, tmp_path / "nope.st", run_id="run", round=1, worker_id="a", weight=1, codec="fp32"
            )
        assert gone.value.kind is ErrorKind.NOT_FOUND
        with pytest.raises(TensorStreamError) as codec:
            await tensorstream.pull_update(channel, run_id="run", round=0, dest=tmp_path / "x", codec="fp8")
        assert codec.value.kind is ErrorKind.INVALID_ARGUMENT
        with pytest.raises(TensorStreamError) as waiting:
            await tensorstream.pull_update(
                channel, run_id="run", round=1, dest=tmp_path / "x", codec="fp32", timeout=0.2
            )
        assert waiting.value.kind is ErrorKind.DEADLINE_EXCEEDED and not (tmp_path / "x").exists()


# -- the data plane ---------------------------------------------------------------------------------


async def test_pushes_and_pulls_move_their_bytes_over_the_data_plane(
    server: ParameterServerService, tmp_path: Path
) -> None:
    assert server.plane is not None
    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 1, tmp_path)  # θ0 pushed (and a second offer refused)
        delta = _write(tmp_path / "d.st", 3, 1e-2)
        sent = await tensorstream.push_update(
            channel, delta, run_id="run", round=0, worker_id="a", weight=1, codec="fp32"
        )
        received, _ = await tensorstream.pull_update(
            channel, run_id="run", round=0, dest=tmp_path / "u.st", codec="fp32", timeout=30
        )
        await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta1.st")
    assert sent == received == delta.stat().st_size
    # θ0 (the second offer is refused at its header) and the update in; the update and θ1 out.
    assert server.plane.transfers == {"received": 2, "sent": 2}
    update, theta0, theta1 = (load_file(str(tmp_path / n)) for n in ("u.st", "theta.st", "theta1.st"))
    for name in SHAPES:
        np.testing.assert_array_equal(theta1[name], theta0[name] + update[name])


async def test_a_push_cut_on_the_data_plane_resumes_where_the_server_is(
    server: ParameterServerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_range = dataplane.send_range
    cuts: list[int] = []

    def cut_once(sock: Any, view: memoryview, start: int, end: int, **kw: Any) -> None:
        if not cuts:
            cuts.append(start + (end - start) // 2)
            send_range(sock, view, start, cuts[0], **kw)
            raise ConnectionResetError("cut")
        send_range(sock, view, start, end, **kw)

    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 1, tmp_path)
        delta = _write(tmp_path / "d.st", 3, 1e-2)
        monkeypatch.setattr(dataplane, "send_range", cut_once)
        sent = await tensorstream.push_update(
            channel, delta, run_id="run", round=0, worker_id="a", weight=1, codec="fp32"
        )
        monkeypatch.undo()
        await tensorstream.pull_update(channel, run_id="run", round=0, dest=tmp_path / "u.st", codec="fp32")
    assert cuts and sent == delta.stat().st_size  # the second connection went on from the cut: nothing sent twice
    assert server.plane is not None and server.plane.transfers["received"] == 1 + 2  # θ0, the update twice
    # The round closed with the update as it was sent: θ1 = θ0 + u with u computed from it.
    update, sent_delta = load_file(str(tmp_path / "u.st")), load_file(str(delta))
    for name in SHAPES:
        assert update[name].shape == sent_delta[name].shape and np.isfinite(update[name]).all()


async def test_a_pull_cut_on_the_data_plane_resumes(
    server: ParameterServerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recv_exactly = dataplane.recv_exactly
    cuts: list[int] = []

    def cut_once(sock: Any, view: memoryview) -> int:
        if not cuts and len(view) > 1000:
            cuts.append(len(view) // 2)
            return recv_exactly(sock, view[: cuts[0]])
        return recv_exactly(sock, view)

    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 1, tmp_path)
        monkeypatch.setattr(dataplane, "recv_exactly", cut_once)
        round_ = await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta.pulled")
    assert round_ == 0 and cuts
    assert (tmp_path / "theta.pulled").read_bytes() == (tmp_path / "theta.st").read_bytes()
    assert server.plane is not None and server.plane.transfers["sent"] == 2  # cut, then the rest


async def test_a_damaged_payload_over_the_data_plane_is_data_loss_and_leaves_no_trace(
    server: ParameterServerService, tmp_path: Path
) -> None:
    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 2, tmp_path)
        delta = _write(tmp_path / "d.st", 3, 1e-2)
        push = tensorstream.push_call(channel, "PushUpdate", paramserver_pb2.PushUpdateResponse)
        with prepared_payload(delta, "fp32") as payload:
            wrong = Digest(payload.digest.algorithm, "0" * len(payload.digest.hex))
            info = StreamInfo(uuid.uuid4().hex, "run", 0, "a", 1.0, payload.layout, wrong)
            with pytest.raises(TensorStreamError) as damaged:
                await tensorstream._push_stream(push, info, payload.path, resumable=True, what="t", host="127.0.0.1")
        assert damaged.value.kind is ErrorKind.DATA_LOSS and damaged.value.reason == "DIGEST_MISMATCH"
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        state = await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="run"))
        assert not state.committed_workers and state.pushes_in_flight == 0
    assert server.plane is not None and server.plane.transfers["received"] == 2  # θ0, the damaged update


async def test_a_client_that_cannot_reach_the_data_port_sends_in_the_call(
    server: ParameterServerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any) -> Any:
        raise dataplane.Refused("no route")

    monkeypatch.setattr(dataplane, "connect", unreachable)
    monkeypatch.setattr(tensorstream, "_plane_failed", {})
    assert server.plane is not None
    offers: list[str] = []
    offer = server.plane.offer

    def counting(identity: str) -> Any:
        offers.append(identity)
        return offer(identity)

    monkeypatch.setattr(server.plane, "offer", counting)
    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 1, tmp_path)
        delta = _write(tmp_path / "d.st", 3, 1e-2)
        sent = await tensorstream.push_update(
            channel, delta, run_id="run", round=0, worker_id="a", weight=1, codec="bf16"
        )
        await tensorstream.pull_update(channel, run_id="run", round=0, dest=tmp_path / "u.st", codec="bf16")
        await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta1.st")
    assert sent > 0 and server.plane is not None and not server.plane.transfers
    assert not server.plane.tickets and server.plane.open_connections == 0
    # After the first refusal the host is not asked again for a while: no ticket was offered since.
    assert tensorstream._plane_failed.keys() == {"127.0.0.1"} and len(offers) == 1


async def test_a_server_without_a_data_port_gets_the_bytes_in_the_call(tmp_path: Path) -> None:
    config = load_config(
        None,
        env={},
        overrides={
            "worker.state_dir": str(tmp_path / "state"),
            "paramserver.listen": "127.0.0.1:0",
            "paramserver.data_listen": "",
        },
    )
    service = build(config)
    assert service.plane is None
    await service.start()
    try:
        async with open_channel(service.address, peer_id="tester") as channel:
            await _open(channel, "run", 1, tmp_path)
            delta = _write(tmp_path / "d.st", 3, 1e-2)
            await tensorstream.push_update(channel, delta, run_id="run", round=0, worker_id="a", weight=1, codec="int8")
            _, contributors = await tensorstream.pull_update(
                channel, run_id="run", round=0, dest=tmp_path / "u.st", codec="int8"
            )
            assert contributors == 1
    finally:
        await service.stop()


async def test_a_client_that_sends_only_a_sha256_is_served(server: ParameterServerService, tmp_path: Path) -> None:
    """An older client: generated stubs, protobuf messages, the header's sha256 field only, no data plane."""
    async with open_channel(server.address, peer_id="tester") as channel:
        await _open(channel, "run", 1, tmp_path)
        delta = _write(tmp_path / "d.st", 3, 1e-2)
        payload = delta.read_bytes()
        layout = read_layout(delta)
        info = StreamInfo("old", "run", 0, "a", 1.0, layout, Digest(SHA256, hashlib.sha256(payload).hexdigest()))
        header = header_message(info)
        header.ClearField("digest")
        assert header.sha256 and not header.HasField("digest")

        def requests() -> Iterator[paramserver_pb2.PushUpdateRequest]:
            yield paramserver_pb2.PushUpdateRequest(message=tensor_pb2.StreamMessage(header=header))
            for offset, length in chunk_ranges(len(payload)):
                chunk = tensor_pb2.Chunk(offset=offset, data=payload[offset : offset + length])
                yield paramserver_pb2.PushUpdateRequest(message=tensor_pb2.StreamMessage(chunk=chunk))

        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        reply = await stub.PushUpdate(requests())
        assert reply.committed and reply.received_bytes == len(payload)
        # Its pull: chunks in the call, the digest verified by the client.
        await tensorstream.pull_update(channel, run_id="run", round=0, dest=tmp_path / "u.st", codec="fp32")


async def test_a_parameters_push_cut_on_the_data_plane_starts_over(
    server: ParameterServerService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """θ0 pushes do not resume: a cut data connection is UNAVAILABLE (not the client's INCOMPLETE), sent again."""
    send_range = dataplane.send_range
    cuts: list[int] = []

    def cut_once(sock: Any, view: memoryview, start: int, end: int, **kw: Any) -> None:
        if not cuts:
            cuts.append(end // 2)
            send_range(sock, view, start, cuts[0], **kw)
            raise ConnectionResetError("cut")
        send_range(sock, view, start, end, **kw)

    monkeypatch.setattr(dataplane, "send_range", cut_once)
    async with open_channel(server.address, peer_id="tester") as channel:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="run", expected_workers=1))
        theta = _write(tmp_path / "theta.st", 0)
        assert await tensorstream.push_parameters(channel, theta, run_id="run", worker_id="w0") == (True, 0)
        await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "back.st")
    assert cuts and (tmp_path / "back.st").read_bytes() == theta.read_bytes()
    assert server.plane is not None and server.plane.transfers["received"] == 2
