"""End to end: two supervised workers train a tiny GPT-2 for two DiLoCo rounds through every real
service — gateway, data node, arbiters, leases, JobService + bridges, DataFetchers, the
ParameterServer and its aggregate job, the reference scheduler — and leave no process behind."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from tendril.scheduler.cluster import processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril_diloco.params import load_params, snapshot
from tendril_models import DataSpec, ModelSpec
from tendril_models.build import build_model

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]


async def test_two_workers_two_rounds(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=2,
        inner_steps=6,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="e2e",
        keep_updates=True,
        worker_extra=(("job.keep_work_dirs", True),),
        timeout_seconds=200,
    )
    began = time.monotonic()
    result = await run_cluster(settings)
    print(f"e2e: {time.monotonic() - began:.1f} s from nothing to a stopped cluster")
    scheduler_log = (result.cluster_root / "logs" / "scheduler.log").read_text()[-3000:]
    assert result.scheduler_exit == 0, scheduler_log
    assert result.killed == [], "every process should stop on SIGTERM"
    assert processes_under(tmp_path) == []

    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1]
    for line in lines:
        assert line["workers"] == ["worker-0", "worker-1"] and line["contributors"] == 2
        assert math.isfinite(line["loss_mean"]) and all(math.isfinite(v) for v in line["loss"].values())
        assert line["samples"] > 0 and line["bytes_up"] > 0 and line["bytes_down"] > 0

    # θ0 is what every worker built from the seed; each round's outer update was served to both
    # workers alike, and the parameter server's final θ is θ0 plus the two updates.
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    model = ModelSpec.from_dict({"config": {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}})
    theta0 = snapshot(build_model(model, DataSpec.from_manifest(manifest), seed=0))
    update_dirs = sorted(result.cluster_root.glob("worker-*/work/job-e2e-t*/updates"))
    assert len(update_dirs) == 2
    u = [[load_params(d / f"round-{r}.safetensors") for r in (0, 1)] for d in update_dirs]
    for r in (0, 1):
        assert all(torch.equal(u[0][r][k], u[1][r][k]) for k in theta0)
    assert max(float(v.abs().max()) for v in u[0][0].values()) > 0
    final = load_params(tmp_path / "model.safetensors")
    assert final.keys() == theta0.keys()
    for k in theta0:
        assert torch.allclose(final[k], theta0[k] + u[0][0][k] + u[0][1][k], atol=1e-5), k
    assert not all(torch.allclose(final[k], theta0[k]) for k in theta0)
