"""Data node process -> DataFetcher process, driven by a real test scheduler (CoordinationService).

Covers verified slices through NextSlice, a sha256 mismatch (refetch, then DATA_LOSS) and a
stream cut mid-transfer by a TCP proxy (the download resumes from its offset and verifies).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from safetensors.numpy import load_file

from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.server import Binding, ServiceServer
from tendril.data_node.manifest import DatasetManifest
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tendril_sdk.errors import error_reason
from tests.integration.test_data_node import DATA_NODE_SERVICE, prepare_small, start_data_node
from tests.procs import running, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

FETCHER_SERVICE = "tendril.data.v1.DataFetcherService"


class _SchedulerError(TendrilError):
    service = "test-scheduler"


class TestScheduler(scheduler_pb2_grpc.CoordinationServiceServicer):
    """Hands out the manifest's slices in order, at most ``limit`` of them."""

    __test__ = False  # not a pytest class

    def __init__(self, manifest: DatasetManifest, data_node_address: str, *, limit: int = 1000) -> None:
        self.manifest = manifest
        self.data_node_address = data_node_address
        self.limit = limit
        self.wrong_sha256: set[str] = set()  # slices announced with a wrong hash
        self.requests: list[scheduler_pb2.AssignSliceRequest] = []

    async def AssignSlice(
        self, request: scheduler_pb2.AssignSliceRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.AssignSliceResponse:
        self.requests.append(request)
        index = len(self.requests) - 1
        if index >= self.limit:
            raise _SchedulerError(ErrorKind.FAILED_PRECONDITION, "no more slices in this test", reason="NO_MORE")
        entry = self.manifest.slices[index % len(self.manifest.slices)]
        sha = "0" * 64 if entry.name in self.wrong_sha256 else entry.sha256
        return scheduler_pb2.AssignSliceResponse(
            assignment=scheduler_pb2.SliceAssignment(
                dataset_id=self.manifest.dataset_id,
                slice_name=entry.name,
                size_bytes=entry.size_bytes,
                sha256=sha,
                data_node_address=self.data_node_address,
                epoch=index // len(self.manifest.slices),
            )
        )


CUT_STALL_SECONDS = 0.5


@dataclass
class CuttingProxy:
    """A TCP proxy that breaks its first connection after ``cut_after`` bytes towards the client."""

    upstream: str
    cut_after: int
    connections: int = 0
    cuts: int = 0
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self.connections += 1
        limit = self.cut_after if self.connections == 1 else None
        self._writers.append(client_w)
        host, port = self.upstream.rsplit(":", 1)
        up_r, up_w = await asyncio.open_connection(host, int(port))
        self._writers.append(up_w)
        pumps = {
            asyncio.create_task(self._pump(client_r, up_w, None)),
            asyncio.create_task(self._pump(up_r, client_w, limit)),
        }
        self._pumps |= pumps
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for writer in (client_w, up_w):
                writer.transport.abort()  # a reset, like a broken network, not a clean close
            for pump in pumps:
                pump.cancel()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int | None) -> None:
        sent = 0
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if limit is not None and sent + len(data) >= limit:
                    writer.write(data[: limit - sent])
                    self.cuts += 1
                    # NOTE: the connection stalls a moment before it breaks: a gRPC client can drop
                    # the messages it has received but not yet handed to the application when the
                    # reset arrives, and a loaded machine would then retry from byte 0 instead of
                    # resuming (the chunks before the cut are read in this pause).
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    await asyncio.sleep(CUT_STALL_SECONDS)
                    return
                writer.write(data)
                sent += len(data)
                await writer.drain()

    async def stop(self) -> None:
        """Close every connection now (the processes behind it must not wait for this loop)."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for pump in self._pumps:
            pump.cancel()
        # The handlers end once their pumps are cancelled (cancelling them too makes asyncio
        # report the cancellation as an error).
        await asyncio.gather(*self._pumps, *self._handlers, return_exceptions=True)


@dataclass
class Plant:
    """The running pieces of one test."""

    manifest: DatasetManifest
    scheduler: TestScheduler
    scheduler_address: str
    fetcher: data_pb2_grpc.DataFetcherServiceStub
    proxy: CuttingProxy | None


@contextlib.asynccontextmanager
async def plant(tmp_path: Path, *, limit: int = 1000, cut_after: int | None = None) -> AsyncIterator[Plant]:
    """A data node and a DataFetcher process, a test scheduler (and a cutting proxy) in this process."""
    manifest = prepare_small(tmp_path / "ds")
    node, node_address = start_data_node(tmp_path / "ds", tmp_path / "node.log")
    config = worker_config(tmp_path)
    fetcher = spawn_service("data_fetcher", config, tmp_path)
    with running(node, fetcher):
        proxy = None
        served_address = node_address
        if cut_after is not None:
            proxy = CuttingProxy(node_address, cut_after)
            served_address = await proxy.start()
        scheduler = TestScheduler(manifest, served_address, limit=limit)
        server = ServiceServer(
            "127.0.0.1:0",
            [
                Binding(
                    "tendril.scheduler.v1.CoordinationService",
                    scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server,
                    scheduler,
                )
            ],
            config_key="test.scheduler",
        )
        await server.start()
        try:
            await wait_serving(node_address, DATA_NODE_SERVICE)
            await wait_serving(config.listen("data_fetcher"), FETCHER_SERVICE)
            async with open_channel(config.listen("data_fetcher"), peer_id="bridge-test") as channel:
                yield Plant(manifest, scheduler, server.address, data_pb2_grpc.DataFetcherServiceStub(channel), proxy)
        finally:
            await server.stop(0)
            if proxy is not None:
                await proxy.stop()


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


async def _open(p: Plant, job: str = "job-1", prefetch: int = 0) -> None:
    await p.fetcher.OpenJob(
        data_pb2.OpenJobRequest(
            job_id=job, worker_id="worker-test", coordinator_address=p.scheduler_address, prefetch=prefetch
        )
    )


async def test_next_slice_returns_verified_slices(tmp_path: Path) -> None:
    async with plant(tmp_path) as p:
        await _open(p)
        got = []
        for _ in range(3):
            reply = await p.fetcher.NextSlice(data_pb2.NextSliceRequest(job_id="job-1"), timeout=60)
            entry = p.manifest.slices[len(got)]
            assert reply.assignment.slice_name == entry.name
            assert _sha256(reply.cache_path) == entry.sha256
            ids = load_file(reply.cache_path)["input_ids"]
            assert ids.shape == (entry.num_sequences, 128)
            got.append(reply)
        stats = await p.fetcher.GetStats(data_pb2.GetStatsRequest())
        assert stats.open_jobs == 1 and stats.sha256_mismatches == 0
        assert stats.cache_misses >= 3 and stats.bytes_downloaded >= sum(s.size_bytes for s in p.manifest.slices[:3])
        assert stats.cache_capacity_bytes == 2 * 1024**3
        assert p.scheduler.requests[0].worker_id == "worker-test" and p.scheduler.requests[0].job_id == "job-1"
        assert p.manifest.slices[0].name in p.scheduler.requests[-1].cached_slices

        await p.fetcher.CloseJob(data_pb2.CloseJobRequest(job_id="job-1"))
        assert (await p.fetcher.GetStats(data_pb2.GetStatsRequest())).open_jobs == 0
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await p.fetcher.NextSlice(data_pb2.NextSliceRequest(job_id="job-1"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "OpenJob" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await p.fetcher.OpenJob(data_pb2.OpenJobRequest(job_id="job-2", worker_id="w"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(err.value) == "COORDINATOR_MISSING"


async def test_sha256_mismatch_is_refetched_then_data_loss(tmp_path: Path) -> None:
    async with plant(tmp_path, limit=3) as p:
        bad = p.manifest.slices[1]
        p.scheduler.wrong_sha256.add(bad.name)
        await _open(p, prefetch=1)
        first = await p.fetcher.NextSlice(data_pb2.NextSliceRequest(job_id="job-1"), timeout=60)
        assert _sha256(first.cache_path) == p.manifest.slices[0].sha256
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await p.fetcher.NextSlice(data_pb2.NextSliceRequest(job_id="job-1"), timeout=60)
        assert err.value.code() == grpc.StatusCode.DATA_LOSS
        assert error_reason(err.value) == "SLICE_SHA256_MISMATCH"
        assert bad.name in err.value.details() and "failed verification twice" in err.value.details()
        third = await p.fetcher.NextSlice(data_pb2.NextSliceRequest(job_id="job-1"), timeout=60)
        assert _sha256(third.cache_path) == p.manifest.slices[2].sha256  # the job goes on
        stats = await p.fetcher.GetStats(data_pb2.GetStatsRequest())
        assert stats.sha256_mismatches == 2
        sizes = [s.size_bytes for s in p.manifest.slices[:3]]
        assert stats.bytes_downloaded == sizes[0] + 2 * sizes[1] + sizes[2]  # the bad one: fetched twice


async def test_cut_mid_stream_resumes_from_offset(tmp_path: Path) -> None:
    async with plant(tmp_path, limit=1, cut_after=1_500_000) as p:
        entry = p.manifest.slices[0]
        assert entry.size_bytes > 2 * 1024 * 1024
        await _open(p, prefetch=1)
        reply = await p.fetcher.NextSlice(data_pb2.NextSliceRequest(job_id="job-1"), timeout=60)
        assert _sha256(reply.cache_path) == entry.sha256
        assert p.proxy is not None and p.proxy.cuts == 1 and p.proxy.connections >= 2
        stats = await p.fetcher.GetStats(data_pb2.GetStatsRequest())
        assert stats.resumed_fetches == 1 and stats.sha256_mismatches == 0
        assert stats.bytes_downloaded == entry.size_bytes  # resumed, never started over
