"""End to end with int4 pseudo-gradients and updates (error feedback on, the codec's default): two
workers train the demo's tiny GPT-2 for a few DiLoCo rounds; the loss still falls and each push
carries about an eighth of the fp32 bytes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tendril.scheduler.cluster import processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril_diloco.params import snapshot
from tendril_models import DataSpec, ModelSpec
from tendril_models.build import build_model

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]


async def test_int4_trains(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=4,
        inner_steps=6,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="i4",
        codec="int4",
        timeout_seconds=200,
    )
    result = await run_cluster(settings)
    scheduler_log = (result.cluster_root / "logs" / "scheduler.log").read_text()[-3000:]
    assert result.scheduler_exit == 0, scheduler_log
    assert result.killed == [] and processes_under(tmp_path) == []
    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1, 2, 3]
    losses = [line["loss_mean"] for line in lines]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.3, losses  # still learning: int4 + error feedback
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    model = ModelSpec.from_dict({"config": {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}})
    numel = sum(v.numel() for v in snapshot(build_model(model, DataSpec.from_manifest(manifest), seed=0)).values())
    for line in lines:
        per_worker = line["bytes_up"] / line["contributors"]
        assert 4 * numel / per_worker > 7, (numel, line["bytes_up"])  # int4: ≈ 7.8× fewer bytes than fp32
