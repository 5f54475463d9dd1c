"""Serving a prepared data set: manifest checks, chunk streams from any offset, bad requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind
from tendril.core.server import Binding, ServiceServer
from tendril.data_node.corpus import collect_files
from tendril.data_node.errors import DataNodeError
from tendril.data_node.manifest import MANIFEST_NAME, DatasetManifest
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.servicer import DataNodeServicer
from tendril.data_node.store import SliceStore
from tendril.data_node.tokenizer import ByteTokenizer
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_sdk.errors import error_reason

CHUNK = 1000


def _dataset(tmp_path: Path) -> tuple[Path, DatasetManifest]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "text.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 400)
    out = tmp_path / "ds"
    options = PrepareOptions(seq_len=32, sequences_per_slice=50, dataset_id="demo", progress=False)
    return out, prepare_dataset(collect_files(src), out, ByteTokenizer(), options)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[data_pb2_grpc.DataNodeServiceStub, Path, DatasetManifest]]:
    out, manifest = _dataset(tmp_path)
    servicer = DataNodeServicer(SliceStore(out), chunk_bytes=CHUNK)
    server = ServiceServer(
        "127.0.0.1:0",
        [Binding("tendril.data.v1.DataNodeService", data_pb2_grpc.add_DataNodeServiceServicer_to_server, servicer)],
        config_key="--listen",
    )
    await server.start()
    try:
        async with open_channel(server.address, peer_id="tester") as channel:
            yield data_pb2_grpc.DataNodeServiceStub(channel), out, manifest
    finally:
        await server.stop(0)


async def _fetch(stub: data_pb2_grpc.DataNodeServiceStub, name: str, offset: int = 0, dataset: str = "") -> bytes:
    data = bytearray()
    expected = offset
    async for reply in stub.FetchSlice(data_pb2.FetchSliceRequest(dataset_id=dataset, slice_name=name, offset=offset)):
        assert reply.offset == expected and len(reply.data) <= CHUNK
        expected += len(reply.data)
        data += reply.data
    return bytes(data)


async def test_manifest_and_chunks_from_any_offset(node) -> None:  # type: ignore[no-untyped-def]
    stub, out, manifest = node
    reply = await stub.GetManifest(data_pb2.GetManifestRequest())
    assert reply.manifest.dataset_id == "demo" and reply.manifest.seq_len == 32 and reply.manifest.vocab_size == 257
    assert [s.sha256 for s in reply.manifest.slices] == [s.sha256 for s in manifest.slices]
    entry = manifest.slices[0]
    whole = (out / entry.name).read_bytes()
    assert entry.size_bytes > 3 * CHUNK
    assert await _fetch(stub, entry.name, dataset="demo") == whole
    assert await _fetch(stub, entry.name, offset=1234) == whole[1234:]
    assert await _fetch(stub, entry.name, offset=entry.size_bytes) == b""


async def test_eval_slices_and_assets_are_served_by_name(node) -> None:  # type: ignore[no-untyped-def]
    stub, out, manifest = node
    reply = await stub.GetManifest(data_pb2.GetManifestRequest())
    m = reply.manifest
    assert m.task == "causal-lm" and [s.name for s in m.eval_slices] == ["eval-00000.safetensors"]
    assert [(a.name, a.kind) for a in m.assets] == [("tokenizer.tar", "tokenizer")]
    whole = json.loads(m.manifest_json)
    assert whole["format"] == "tendril-dataset/2" and whole["dataset_id"] == "demo"
    assert whole["tensors"] == {"input_ids": {"dtype": "int32", "shape": [32]}}
    assert whole["eval_slices"][0]["sha256"] == manifest.eval_slices[0].sha256
    for name in ("eval-00000.safetensors", "tokenizer.tar"):
        assert await _fetch(stub, name) == (out / name).read_bytes()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _fetch(stub, "eval-00099.safetensors")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(err.value) == "SLICE_NOT_FOUND"
    assert "eval slices" in err.value.details()


def test_store_checks_eval_slices_and_assets_too(tmp_path: Path) -> None:
    out, _ = _dataset(tmp_path)
    (out / "tokenizer.tar").unlink()
    with pytest.raises(DataNodeError) as err:
        SliceStore(out)
    assert err.value.reason == "SLICE_FILE_MISSING" and "tokenizer.tar" in err.value.message


@pytest.mark.parametrize(
    ("name", "offset", "dataset", "code", "reason"),
    [
        ("../ds/" + MANIFEST_NAME, 0, "", grpc.StatusCode.INVALID_ARGUMENT, "BAD_SLICE_NAME"),
        ("/etc/passwd", 0, "", grpc.StatusCode.INVALID_ARGUMENT, "BAD_SLICE_NAME"),
        ("", 0, "", grpc.StatusCode.INVALID_ARGUMENT, "NO_SLICE"),
        (MANIFEST_NAME, 0, "", grpc.StatusCode.NOT_FOUND, "SLICE_NOT_FOUND"),
        ("slice-99999.safetensors", 0, "", grpc.StatusCode.NOT_FOUND, "SLICE_NOT_FOUND"),
        ("slice-00000.safetensors", 10**9, "", grpc.StatusCode.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE"),
        ("slice-00000.safetensors", 0, "other", grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND"),
    ],
)
async def test_bad_fetches(node, name: str, offset: int, dataset: str, code: grpc.StatusCode, reason: str) -> None:  # type: ignore[no-untyped-def]
    stub, _, _ = node
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _fetch(stub, name, offset, dataset)
    assert err.value.code() == code
    assert error_reason(err.value) == reason
    assert err.value.details()


async def test_manifest_of_another_dataset_is_not_found(node) -> None:  # type: ignore[no-untyped-def]
    stub, _, _ = node
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetManifest(data_pb2.GetManifestRequest(dataset_id="other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "demo" in err.value.details()


def test_store_refuses_damaged_or_missing_files(tmp_path: Path) -> None:
    out, manifest = _dataset(tmp_path)
    SliceStore(out, verify=True)
    path = out / manifest.slices[1].name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    SliceStore(out)  # same size: only --verify notices
    with pytest.raises(DataNodeError) as err:
        SliceStore(out, verify=True)
    assert err.value.reason == "SLICE_FILE_DAMAGED"
    path.unlink()
    with pytest.raises(DataNodeError) as err:
        SliceStore(out)
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION and err.value.reason == "SLICE_FILE_MISSING"


def test_store_needs_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataNodeError) as err:
        SliceStore(tmp_path)
    assert err.value.kind is ErrorKind.NOT_FOUND and "tendril data prepare" in err.value.message
    (tmp_path / MANIFEST_NAME).write_text('{"format": "tendril-dataset/1", "dataset_id": "x", "slices": []}')
    with pytest.raises(DataNodeError) as err:
        SliceStore(tmp_path)
    assert err.value.reason == "BAD_MANIFEST"


def test_served_under_another_id(tmp_path: Path) -> None:
    out, _ = _dataset(tmp_path)
    store = SliceStore(out, dataset_id="renamed")
    assert store.dataset_id == "renamed"
    store.check_dataset("renamed")
    with pytest.raises(DataNodeError):
        store.check_dataset("demo")
