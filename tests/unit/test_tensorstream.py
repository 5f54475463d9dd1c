"""Tensor streams: headers and offsets (64-bit), lazy chunks, receivers, resume after a cut."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tendril.core import streaming, tensorfile
from tendril.core.streaming import (
    SHA256,
    BufferDestination,
    Digest,
    FileDestination,
    Receiver,
    StreamError,
    StreamInfo,
    chunk_ranges,
    header_frame,
    header_message,
    info_from_header,
    iter_frames,
    mapped,
    parse_frame,
)
from tendril_proto.paramserver.v1 import paramserver_pb2
from tendril_proto.tensor.v1 import tensor_pb2

MIB = 1024 * 1024


def _info(layout: tensorfile.Layout, sha: str = "0" * 64, **kw: object) -> StreamInfo:
    values = {"stream_id": "s1", "run_id": "run", "round": 3, "worker_id": "w", "weight": 2.5}
    values.update(kw)
    return StreamInfo(layout=layout, digest=Digest(SHA256, sha), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", ["fp32", "bf16", "int8"])
def test_header_round_trip(codec: str) -> None:
    layout, header = tensorfile.plan_layout([("a", (3, 5)), ("b", (1000,)), ("c", ())], codec, 128)
    assert layout.header_size == len(header) and layout.header_size % 8 == 0
    info = _info(layout, start_offset=17)
    back = info_from_header(header_message(info))
    assert back == info
    assert back.total_bytes == layout.total_bytes


def test_the_header_names_the_run_in_run_id_and_an_old_header_is_still_read() -> None:
    layout, _ = tensorfile.plan_layout([("a", (4,))], "fp32")
    message = header_message(_info(layout))
    assert message.run_id == "run" and not message.job_id
    message.ClearField("run_id")
    message.job_id = "old-run"  # what a client written against the deprecated name sends
    assert info_from_header(message).run_id == "old-run"


def test_offsets_far_above_4_gib() -> None:
    # 1.5 G fp32 values + a second tensor: offsets need 64 bits; nothing is allocated.
    layout, _ = tensorfile.plan_layout([("huge", (1_500_000_000,)), ("tail", (7,))], "fp32")
    tail = layout.tensors[1]
    assert tail.begin == 6_000_000_000 and layout.total_bytes == layout.header_size + 6_000_000_028
    message = header_message(_info(layout, start_offset=5_000_000_000))
    parsed = tensor_pb2.StreamHeader.FromString(message.SerializeToString())
    info = info_from_header(parsed)
    assert info.layout.tensors[1].begin == 6_000_000_000
    assert info.start_offset == 5_000_000_000 and info.total_bytes > 2**32
    int8, _ = tensorfile.plan_layout([("huge", (3_000_000_000,))], "int8", 256)
    assert int8.tensors[0].end - int8.tensors[0].begin == 3_000_000_000
    assert info_from_header(header_message(_info(int8))).layout == int8


def test_bad_headers_say_what_is_wrong() -> None:
    layout, _ = tensorfile.plan_layout([("a", (4,))], "fp32")
    good = header_message(_info(layout))

    def broken(**changes: object) -> str:
        header = tensor_pb2.StreamHeader()
        header.CopyFrom(good)
        for key, value in changes.items():
            if key == "dtype":
                header.tensors[0].dtype = str(value)
            elif key == "end":
                header.tensors[0].end = int(value)  # type: ignore[call-overload]
            else:
                setattr(header, key, value)
        with pytest.raises(StreamError) as err:
            info_from_header(header)
        return err.value.message

    assert "stream_id" in broken(stream_id="")
    assert "sha256" in broken(sha256="xyz")
    assert "BF16" in broken(dtype="BF16") or "F32" in broken(dtype="BF16")
    assert "do not hold" in broken(end=12)
    assert "does not fit" in broken(total_bytes=3)
    assert "past the payload" in broken(start_offset=10_000)
    assert "block_size" in broken(codec=tensor_pb2.CODEC_INT8, block_size=0)


def iter_chunks(view: memoryview, start: int) -> Iterator[tuple[int, memoryview]]:
    """(offset, data) of the chunks from ``start``, as a receiver gets them."""
    for offset, length in chunk_ranges(len(view), start):
        yield offset, view[offset : offset + length]


def test_chunks_are_cut_lazily_at_any_start() -> None:
    payload = bytes(range(256)) * 9000  # 2.2 MiB
    view = memoryview(payload)
    frames = [parse_frame(f) for f in iter_frames(view, 0)]
    assert [f.offset for f in frames] == [0, MIB, 2 * MIB]
    assert b"".join(bytes(f.data) for f in frames if f.data is not None) == payload
    resumed = [parse_frame(f) for f in iter_frames(view, MIB + 5)]
    assert resumed[0].offset == MIB + 5
    assert b"".join(bytes(f.data) for f in resumed if f.data is not None) == payload[MIB + 5 :]
    assert list(iter_frames(view, len(payload))) == []


def test_frames_are_exactly_the_protobuf_encoding() -> None:
    """Any gRPC client with the generated stubs reads and writes the same bytes."""
    data = bytes(range(256)) * 5
    view = memoryview(data)
    for offset in (0, 7, 2**33 + 1):
        chunk = tensor_pb2.StreamMessage(chunk=tensor_pb2.Chunk(offset=offset, data=data[:100]))
        frame = parse_frame(paramserver_pb2.PushUpdateRequest(message=chunk).SerializeToString())
        assert (frame.offset, bytes(frame.data or b""), frame.header) == (offset, data[:100], None)
    assert (
        iter_frames(view, 0).__next__()
        == paramserver_pb2.PullUpdateResponse(
            message=tensor_pb2.StreamMessage(chunk=tensor_pb2.Chunk(offset=0, data=data))
        ).SerializeToString()
    )
    layout, _ = tensorfile.plan_layout([("a", (3,))], "int8", 2)
    header = header_message(_info(layout))
    wire = header_frame(header, contributors=3)
    assert (
        wire
        == paramserver_pb2.PullUpdateResponse(
            message=tensor_pb2.StreamMessage(header=header), contributors=3
        ).SerializeToString()
    )
    parsed = parse_frame(wire)
    assert parsed.header == header and parsed.contributors == 3 and parsed.data is None
    empty_chunk = parse_frame(
        paramserver_pb2.PushUpdateRequest(
            message=tensor_pb2.StreamMessage(chunk=tensor_pb2.Chunk())
        ).SerializeToString()
    )
    assert empty_chunk.is_chunk and empty_chunk.offset == 0 and len(empty_chunk.data or b"") == 0
    with pytest.raises(StreamError, match="runs past"):
        parse_frame(wire[:-3])


def _payload(tmp_path: Path) -> tuple[Path, StreamInfo]:
    path = tmp_path / "p.safetensors"
    save_file({"w": np.random.default_rng(0).standard_normal(700_000).astype(np.float32)}, str(path))
    layout = tensorfile.read_layout(path)
    return path, _info(layout, tensorfile.sha256_file(path).hexdigest())


def test_receiver_writes_in_order_and_verifies(tmp_path: Path) -> None:
    path, info = _payload(tmp_path)
    buffer = bytearray(info.total_bytes)
    receiver = Receiver(info, BufferDestination(memoryview(buffer)))
    view = memoryview(path.read_bytes())
    chunks = list(iter_chunks(view, 0))
    with pytest.raises(StreamError, match="resume from there"):
        receiver.feed(*chunks[1])
    for offset, data in chunks:
        receiver.feed(offset, data)
    receiver.verify()
    assert bytes(buffer) == path.read_bytes()
    with pytest.raises(StreamError, match="runs past"):
        receiver.feed(receiver.received, b"x")


def test_receiver_detects_damage(tmp_path: Path) -> None:
    path, info = _payload(tmp_path)
    receiver = Receiver(info, BufferDestination(memoryview(bytearray(info.total_bytes))))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    receiver.feed(0, bytes(data))
    with pytest.raises(StreamError) as err:
        receiver.verify()
    assert err.value.reason == "SHA256_MISMATCH"
    short = Receiver(info, BufferDestination(memoryview(bytearray(info.total_bytes))))
    short.feed(0, bytes(data[:100]))
    with pytest.raises(StreamError, match="after 100 of"):
        short.verify()


def test_resume_after_a_cut_into_a_file(tmp_path: Path) -> None:
    path, info = _payload(tmp_path)
    dest_path = tmp_path / "dest.safetensors"
    view = memoryview(path.read_bytes())
    first = Receiver(info, FileDestination(dest_path, info.total_bytes))
    for offset, data in iter_chunks(view, 0):
        first.feed(offset, data)
        if first.received >= MIB:
            break  # the connection is cut here
    first.close()
    cut = first.received
    # A new process picks up: the bytes already there are re-hashed, the rest resumes at ``cut``.
    digest = tensorfile.sha256_file(dest_path, upto=cut)
    second = Receiver(info, FileDestination(dest_path, info.total_bytes, keep=True), received=cut, digest=digest)
    for offset, data in iter_chunks(view, cut):
        second.feed(offset, data)
    second.verify()
    second.close()
    assert dest_path.read_bytes() == path.read_bytes()
    assert streaming.check_payload_header(dest_path, info) == info.layout


def test_payload_above_2_gib_streams_across_the_boundary(tmp_path: Path) -> None:
    """A sparse 2 GiB + 3 MiB payload: chunks around byte 2^31 land at the right offsets."""
    numel = (2**31 + 3 * MIB) // 4
    layout, header = tensorfile.plan_layout([("big", (numel,))], "fp32")
    src = tmp_path / "big.safetensors"
    fd = tensorfile.create_payload(src, layout, header)
    marker = np.arange(MIB // 4, dtype=np.float32)
    tensorfile.pwrite_all(fd, marker.data, 2**31)  # real bytes right across the 2 GiB boundary
    os.close(fd)
    # NOTE: hashing 2 GiB takes seconds on a loaded 2-core box; sha256 checks are covered by
    # the small-payload tests, this one is about 64-bit offsets only.
    info = _info(layout)
    dest_path = tmp_path / "received.safetensors"
    cut = 2**31 - MIB // 2  # the transfer was cut half a MiB before 2 GiB
    FileDestination(dest_path, layout.total_bytes, preallocate=False).close()
    os.truncate(dest_path, cut)  # zeros, like the payload before the marker
    with open(src, "r+b") as f:
        f.seek(0)
        tensorfile.pwrite_all(os.open(dest_path, os.O_WRONLY), f.read(layout.header_size), 0)
    receiver = Receiver(
        info, FileDestination(dest_path, layout.total_bytes, keep=True), received=cut, digest=hashlib.sha256()
    )
    with mapped(src) as view:
        offsets = []
        for offset, data in iter_chunks(view, cut):
            offsets.append(offset)
            receiver.feed(offset, data)
        del data
    assert receiver.complete and receiver.received == layout.total_bytes
    receiver.close()
    assert offsets[:3] == [cut, cut + MIB, cut + 2 * MIB] and offsets[1] > 2**31
    out = tensorfile.read_array(os.open(dest_path, os.O_RDONLY), 2**31, np.float32, marker.size)
    np.testing.assert_array_equal(out, marker)


def test_same_tensors_compares_placement() -> None:
    a, _ = tensorfile.plan_layout([("x", (4,)), ("y", (2,))], "fp32")
    b, _ = tensorfile.plan_layout([("y", (2,)), ("x", (4,))], "fp32")
    assert streaming.same_tensors(a, a)
    assert not streaming.same_tensors(a, b)
    assert not streaming.same_tensors(a, dataclasses.replace(a, codec="bf16"))


async def test_pipelined_hashing_gives_the_same_digest(tmp_path: Path) -> None:
    path, info = _payload(tmp_path)
    view = memoryview(path.read_bytes())
    buffer = bytearray(info.total_bytes)
    receiver = Receiver(info, BufferDestination(memoryview(buffer)))
    for offset, data in iter_chunks(view, 0):
        await receiver.feed_async(offset, data)
    await receiver.settle()
    receiver.verify()
    assert bytes(buffer) == path.read_bytes()
    damaged = Receiver(info, BufferDestination(memoryview(bytearray(info.total_bytes))))
    await damaged.feed_async(0, b"x" * info.total_bytes)
    await damaged.settle()
    with pytest.raises(StreamError, match="damaged"):
        damaged.verify()


def _random_payload(size_at_least: int, seed: int = 2) -> tuple[bytes, StreamInfo]:
    """A payload of a little more than ``size_at_least`` bytes and its stream info."""
    layout, header = tensorfile.plan_layout([("w", (size_at_least // 4 + 12345,))], "fp32")
    data = np.random.default_rng(seed).integers(0, 256, size=layout.data_size, dtype=np.uint8).tobytes()
    payload = header + data
    return payload, _info(layout, hashlib.sha256(payload).hexdigest())


class _GatedDigest:
    """A sha256 whose updates wait for a gate (a slow hasher), or fail when told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.inner = hashlib.sha256()
        self.gate = threading.Event()
        self.fail = fail

    def update(self, data: bytes | memoryview) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise OSError("simulated hashing failure")
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


async def _feed(receiver: Receiver, view: memoryview, chunk_bytes: int = 256 * 1024) -> None:
    for offset, length in chunk_ranges(len(view), receiver.received, chunk_bytes):
        await receiver.feed_async(offset, view[offset : offset + length])


async def test_a_slow_hasher_holds_the_feed_back_and_a_cancelled_wait_loses_nothing() -> None:
    payload, info = _random_payload(3 * streaming.HASH_BACKLOG_BYTES)
    view = memoryview(payload)
    digest = _GatedDigest()
    buffer = bytearray(info.total_bytes)
    receiver = Receiver(info, BufferDestination(memoryview(buffer)), digest=digest)  # type: ignore[arg-type]
    task = asyncio.create_task(_feed(receiver, view))
    # The hasher is stuck at the gate: the feed stops once the backlog is full, and waits.
    deadline = time.monotonic() + 30
    while receiver.received <= streaming.HASH_BACKLOG_BYTES:
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    assert not task.done() and receiver.received <= streaming.HASH_BACKLOG_BYTES + 256 * 1024
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RuntimeError, match="settle"):
        receiver.verify()
    digest.gate.set()
    await _feed(receiver, view)  # resumes at ``received``: the chunk taken before the cancel is in
    await receiver.settle()
    receiver.verify()
    assert bytes(buffer) == payload


async def test_a_failed_hash_fails_the_stream() -> None:
    payload, info = _random_payload(MIB)
    digest = _GatedDigest(fail=True)
    digest.gate.set()
    receiver = Receiver(info, BufferDestination(memoryview(bytearray(info.total_bytes))), digest=digest)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="hashing the stream failed"):
        await _feed(receiver, memoryview(payload))
        await receiver.settle()
    with pytest.raises(RuntimeError, match="hashing the stream failed"):
        receiver.verify()


async def test_concurrent_receivers_take_turns_on_the_hasher_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "HASH_TURN_BYTES", 512 * 1024)  # many turns per stream
    streams = [_random_payload(6 * MIB, seed) for seed in range(5)]
    buffers = [bytearray(info.total_bytes) for _, info in streams]
    receivers = [
        Receiver(info, BufferDestination(memoryview(buf))) for (_, info), buf in zip(streams, buffers, strict=True)
    ]
    await asyncio.gather(*(_feed(r, memoryview(p), 64 * 1024) for r, (p, _) in zip(receivers, streams, strict=True)))
    await asyncio.gather(*(r.settle() for r in receivers))
    for receiver, buffer, (payload, _) in zip(receivers, buffers, streams, strict=True):
        receiver.verify()
        assert bytes(buffer) == payload


async def test_synchronous_feed_after_settle_hashes_in_order() -> None:
    payload, info = _random_payload(4 * MIB)
    view = memoryview(payload)
    digest = _GatedDigest()
    receiver = Receiver(info, BufferDestination(memoryview(bytearray(info.total_bytes))), digest=digest)  # type: ignore[arg-type]
    ranges = list(chunk_ranges(len(view), 0, MIB))
    for offset, length in ranges[:-1]:
        await receiver.feed_async(offset, view[offset : offset + length])
    offset, length = ranges[-1]
    with pytest.raises(RuntimeError, match="settle"):  # chunks still queued: it would hash out of order
        receiver.feed(offset, view[offset : offset + length])
    digest.gate.set()
    await receiver.settle()
    receiver.feed(offset, view[offset : offset + length])  # hashed here, after every queued chunk
    receiver.verify()
