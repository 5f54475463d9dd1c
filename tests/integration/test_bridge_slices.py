"""Bridge NextSlice through the real data path: data node process → DataFetcher process → bridge.

A test scheduler (CoordinationService.AssignSlice, in this process) hands out the slices; the
bridge runs in this process on its Unix socket. Each slice shows up under data/ as a read-only
hard link of the DataFetcher's verified cache file.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from pathlib import Path

import pytest

from tendril.bridge.auth import bearer
from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.server import JobBridge
from tendril.core.channel import open_channel
from tendril.core.server import Binding, ServiceServer
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2_grpc
from tendril_sdk.job import ExecutorRef, JobDescriptor
from tests.integration.test_data_fetcher import TestScheduler
from tests.integration.test_data_node import prepare_small, start_data_node
from tests.procs import kill_group, running, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

TOKEN = "slice-token"


@pytest.mark.parametrize("restart_fetcher", [False, True], ids=["steady", "fetcher-restarted"])
async def test_next_slice_links_verified_slices_into_the_work_dir(tmp_path: Path, restart_fetcher: bool) -> None:
    manifest = prepare_small(tmp_path / "ds", sequences_per_slice=512, max_bytes=300_000)
    node, node_address = start_data_node(tmp_path / "ds", tmp_path / "node.log")
    config = worker_config(tmp_path / "w")
    fetcher = spawn_service("data_fetcher", config, tmp_path)
    restarted: list[subprocess.Popen[bytes]] = []
    with running(node, fetcher), contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: [kill_group(p) for p in restarted])
        await wait_serving(node_address)
        await wait_serving(config.listen("data_fetcher"))
        scheduler = TestScheduler(manifest, node_address)
        server = ServiceServer(
            "127.0.0.1:0",
            [
                Binding(
                    "tendril.scheduler.v1.CoordinationService",
                    scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server,
                    scheduler,
                )
            ],
            config_key="test",
        )
        await server.start()
        work = tmp_path / "job-s1"
        work.mkdir(mode=0o700)
        for sub in WORK_SUBDIRS:
            (work / sub).mkdir()
        job = JobDescriptor(
            job_id="s1",
            worker_id=config.worker_id,
            lease_id="L1",
            owner_id="sched",
            executor=ExecutorRef("train", "diloco"),
            config={},
            work_dir=work,
            socket_path=work / "bridge.sock",
            coordinator_address=server.address,
        )
        bridge = JobBridge(
            job,
            TOKEN,
            data_fetcher_address=config.listen("data_fetcher"),
            paramserver_address=config.listen("paramserver"),
        )
        await bridge.start()
        try:
            async with open_channel(f"unix:{job.socket_path}") as channel:
                stub = bridge_pb2_grpc.JobBridgeServiceStub(channel)
                for i, expected in enumerate(manifest.slices[:3]):
                    if restart_fetcher and i == 2:
                        # a DataFetcher that restarts forgets its open jobs; the bridge opens again
                        kill_group(fetcher)
                        restarted.append(spawn_service("data_fetcher", config, tmp_path, name="fetcher2"))
                        await wait_serving(config.listen("data_fetcher"))
                    got = await stub.NextSlice(bridge_pb2.NextSliceRequest(), metadata=bearer(TOKEN), timeout=120)
                    if restart_fetcher and i == 2:
                        # NOTE: what the dead fetcher had prefetched is gone with it; the new one
                        # asks the scheduler afresh, so the name is whatever comes next.
                        expected = next(s for s in manifest.slices if s.name == got.assignment.slice_name)
                    assert got.path == f"data/{expected.name}" and got.assignment.slice_name == expected.name
                    placed = work / got.path
                    assert hashlib.sha256(placed.read_bytes()).hexdigest() == expected.sha256
                    assert placed.stat().st_mode & 0o222 == 0, "read-only"
                    assert placed.stat().st_nlink >= 2, "a hard link of the cache file, not a copy"
            assert all(r.worker_id == config.worker_id and r.job_id == "s1" for r in scheduler.requests)
        finally:
            await bridge.stop()
            await server.stop(0)
