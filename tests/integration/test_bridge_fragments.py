"""Streaming sync through a real bridge and ParameterServer: each fragment of θ is a run of its
own (<run_id>-f<k>); a call naming a fragment publishes, pushes, pulls and fetches that run only,
and the tensors of every fragment's run end as the workers' fragments (no run sees another's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tendril.bridge.server import JobBridge
from tendril_sdk import BridgeClient, BridgeError, BridgeReason
from tendril_sdk.job import ExecutorRef, JobDescriptor
from tests.integration.test_bridge_paramserver import LR, MOMENTUM, job_work_dir, serving_runs

pytestmark = pytest.mark.integration

RUN = "run-stream"
TOKEN = "bridge-token"
FRAGMENTS = ({"emb": (6, 4)}, {"h.0.w": (4, 4), "head": (4, 3)})


@pytest.fixture
async def paramserver(tmp_path: Path) -> AsyncIterator[str]:
    async with serving_runs(tmp_path, *(f"{RUN}-f{k}" for k in range(len(FRAGMENTS)))) as address:
        yield address


async def test_each_fragment_is_synced_through_its_own_run(tmp_path: Path, paramserver: str) -> None:
    work = job_work_dir(tmp_path)
    gen = np.random.default_rng(3)
    theta0 = [{n: gen.standard_normal(s).astype(np.float32) for n, s in frag.items()} for frag in FRAGMENTS]
    deltas = [{n: np.full(s, 0.1 * (k + 1), np.float32) for n, s in frag.items()} for k, frag in enumerate(FRAGMENTS)]
    job = JobDescriptor(
        job_id="t1",
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("train", "diloco"),
        config={"parameter_server": paramserver, "run_id": RUN, "codec": "fp32", "fragments": len(FRAGMENTS)},
        work_dir=work,
        socket_path=work / "bridge.sock",
    )
    bridge = JobBridge(job, TOKEN, data_fetcher_address="127.0.0.1:1", paramserver_address=paramserver)
    await bridge.start()
    try:
        async with BridgeClient(job.socket_path, TOKEN, job=job) as client:
            for k in range(len(FRAGMENTS)):
                save_file(theta0[k], str(work / f"params/theta0-f{k}.safetensors"))
                published = await client.publish_parameters(f"params/theta0-f{k}.safetensors", fragment=k)
                assert published.accepted and published.round == 0
            # fragment 1 is pushed first (its point inside the round), fragment 0 at the sync point
            for k in (1, 0):
                save_file(deltas[k], str(work / f"updates/delta-f{k}.safetensors"))
                await client.send_update(f"updates/delta-f{k}.safetensors", 0, 8.0, fragment=k)
            for k in range(len(FRAGMENTS)):
                got = await client.receive_update(0, path=f"updates/f{k}-round-0.safetensors", fragment=k)
                update = load_file(str(got.path))
                assert update.keys() == theta0[k].keys()  # only this fragment's tensors
                for name, g in deltas[k].items():  # the first outer Nesterov step of this fragment's run
                    np.testing.assert_allclose(update[name], -LR * (g + MOMENTUM * g), rtol=1e-6)
                fetched = await client.fetch_parameters(f"params/current-f{k}.safetensors", fragment=k)
                assert fetched.round == 1
                theta1 = load_file(str(fetched.path))
                for name in theta0[k]:
                    np.testing.assert_array_equal(theta1[name], theta0[k][name] + update[name])
            with pytest.raises(BridgeError) as err:
                await client.fetch_parameters("params/x.safetensors", fragment=len(FRAGMENTS))
            assert err.value.reason == BridgeReason.BAD_FRAGMENT
    finally:
        await bridge.stop()
