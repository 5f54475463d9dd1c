"""Bridge data-plane RPCs against a real ParameterServer: θ0, an update, the outer step, θ1.

Both run in this process (the ParameterServer on loopback TCP, the bridge on its Unix
socket); the executor side is a plain gRPC client with the job's token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tendril.bridge.auth import bearer
from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.server import JobBridge
from tendril.core.channel import open_channel
from tendril.paramserver.service import ParameterServerService
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_proto.tensor.v1 import tensor_pb2
from tendril_sdk.job import ExecutorRef, JobDescriptor
from tests.procs import worker_config

pytestmark = pytest.mark.integration

RUN = "run-bridge"
TOKEN = "bridge-token"
LR, MOMENTUM = 0.7, 0.9


@pytest.fixture
async def paramserver(tmp_path: Path) -> AsyncIterator[str]:
    service = ParameterServerService(worker_config(tmp_path / "ps"))
    await service.start()
    try:
        async with open_channel(service.address, peer_id="sched") as channel:
            await paramserver_pb2_grpc.ParameterServerServiceStub(channel).OpenJob(
                paramserver_pb2.OpenJobRequest(
                    job_id=RUN,
                    expected_workers=1,
                    quorum=1,
                    round_timeout_seconds=30,
                    outer_lr=LR,
                    outer_momentum=MOMENTUM,
                    codec=tensor_pb2.CODEC_FP32,
                    rounds=2,
                )
            )
        yield service.address
    finally:
        await service.stop()


async def test_publish_send_receive_fetch(tmp_path: Path, paramserver: str) -> None:
    work = tmp_path / "job-t1"
    work.mkdir(mode=0o700)
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir()
    theta0 = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, dtype=np.float32)}
    delta = {"w": np.full((3, 4), 0.5, dtype=np.float32), "b": np.full(5, -1.0, dtype=np.float32)}
    save_file(theta0, str(work / "params" / "theta0.safetensors"))
    save_file(delta, str(work / "updates" / "delta.safetensors"))
    job = JobDescriptor(
        job_id="t1",
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("train", "diloco"),
        config={"parameter_server": paramserver, "run_id": RUN, "codec": "fp32", "round_timeout_seconds": 30},
        work_dir=work,
        socket_path=work / "bridge.sock",
    )
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
