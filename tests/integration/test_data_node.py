"""A real data node process: serving, gateway registration (refresh, delete on stop), bad starts."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from tendril.core.channel import open_channel
from tendril.core.ports import free_port
from tendril.data_node.corpus import stdlib_corpus
from tendril.data_node.manifest import DatasetManifest
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.tokenizer import ByteTokenizer
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tests.procs import kill_group, running, spawn, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

DATA_NODE_SERVICE = "tendril.data.v1.DataNodeService"


def prepare_small(out: Path, *, sequences_per_slice: int = 4096, max_bytes: int = 1_200_000) -> DatasetManifest:
    """A data set from a stdlib prefix; by default 2 MiB slices (several 1 MiB chunks each)."""
    options = PrepareOptions(
        seq_len=128, sequences_per_slice=sequences_per_slice, max_bytes=max_bytes, dataset_id="std", progress=False
    )
    return prepare_dataset(stdlib_corpus(), out, ByteTokenizer(), options)


def start_data_node(folder: Path, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m tendril.data_node serve`` on a free port; returns (process, address)."""
    address = f"127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "tendril.data_node", "serve", str(folder), "--listen", address, *extra]
    return spawn(args, log=log), address


async def _get_record(stub: gateway_pb2_grpc.RegistryServiceStub, dataset_id: str) -> gateway_pb2.Record | None:
    try:
        reply = await stub.Get(gateway_pb2.GetRequest(kind="dataset", id=dataset_id), timeout=2)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return reply.record


async def test_serves_and_announces_itself_until_stopped(tmp_path: Path) -> None:
    manifest = prepare_small(tmp_path / "ds")
    config = worker_config(tmp_path)
    gateway_address = config.gateway.embedded_listen
    gateway = spawn_service("gateway", config, tmp_path)
    node, address = start_data_node(
        tmp_path / "ds", tmp_path / "node.log", "--gateway", gateway_address, "--registry-ttl", "1.5"
    )
    with running(gateway, node):
        await wait_serving(gateway_address)
        await wait_serving(address, DATA_NODE_SERVICE)
        async with open_channel(gateway_address, peer_id="tester") as channel:
            registry = gateway_pb2_grpc.RegistryServiceStub(channel)
            deadline = time.monotonic() + 20
            record = await _get_record(registry, "std")
            while record is None or record.version < 3:  # announced, then refreshed (TTL/3) twice
                assert time.monotonic() < deadline, f"record not announced and refreshed: {record}"
                await asyncio.sleep(0.1)
                record = await _get_record(registry, "std")
            announced = data_pb2.DatasetRecord()
            assert record.payload.Unpack(announced)
            assert announced.dataset_id == "std" and announced.address == address
            assert [s.sha256 for s in announced.manifest.slices] == [s.sha256 for s in manifest.slices]

            async with open_channel(announced.address, peer_id="tester") as node_channel:
                stub = data_pb2_grpc.DataNodeServiceStub(node_channel)
                reply = await stub.GetManifest(data_pb2.GetManifestRequest(dataset_id="std"))
                assert reply.manifest == announced.manifest
                entry = manifest.slices[0]
                chunks = [c async for c in stub.FetchSlice(data_pb2.FetchSliceRequest(slice_name=entry.name))]
                assert all(len(c.data) <= 1024 * 1024 for c in chunks) and len(chunks) >= 2
                assert hashlib.sha256(b"".join(c.data for c in chunks)).hexdigest() == entry.sha256

            kill_group(node, signal.SIGTERM)
            assert node.returncode is not None
            assert await _get_record(registry, "std") is None  # deleted on a clean stop, not left to expire


async def test_bad_starts_fail_with_one_clear_line(tmp_path: Path) -> None:
    proc, _ = start_data_node(tmp_path / "missing", tmp_path / "missing.log")
    assert proc.wait(timeout=60) == 2
    text = (tmp_path / "missing.log").read_text()
    assert "manifest.json is missing" in text and "Traceback" not in text

    prepare_small(tmp_path / "ds", max_bytes=200_000)
    first, address = start_data_node(tmp_path / "ds", tmp_path / "first.log")
    with running(first):
        await wait_serving(address, DATA_NODE_SERVICE)
        args = [sys.executable, "-m", "tendril.data_node", "serve", str(tmp_path / "ds"), "--listen", address]
        second = spawn(args, log=tmp_path / "second.log")
        with running(second):
            assert second.wait(timeout=60) != 0
        text = (tmp_path / "second.log").read_text()
        assert "already in use" in text and "--listen" in text
