"""End to end, streaming sync: two workers train the demo's tiny model for three rounds with θ
in two fragments, each a run of its own at the parameter server, pushed at staggered points of
a round while training goes on; the loss falls, and the parameter server's final θ (the
fragments' runs merged) is every worker's synchronized θ, bit for bit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tendril.scheduler.cluster import processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril_diloco.params import load_params
from tests.integration.test_e2e_sync_modes import _digest

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]


async def test_streaming_sync_ends_with_the_servers_theta_on_every_worker(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=3,
        inner_steps=8,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="e2e",
        sync="streaming",
        keep_updates=True,
        worker_extra=(("job.keep_work_dirs", True),),
        timeout_seconds=200,
    )
    began = time.monotonic()
    result = await run_cluster(settings)
    print(f"e2e streaming: {time.monotonic() - began:.1f} s from nothing to a stopped cluster")
    scheduler_log = (result.cluster_root / "logs" / "scheduler.log").read_text()[-3000:]
    assert result.scheduler_exit == 0, scheduler_log
    assert result.killed == [] and processes_under(tmp_path) == []

    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert line["workers"] == ["worker-0", "worker-1"] and line["contributors"] == 2
    held_out = [line["eval_loss"] for line in lines if "eval_loss" in line]
    print(f"e2e streaming: held-out loss {held_out}, training loss {[line['loss_mean'] for line in lines]}")
    losses = held_out if len(held_out) >= 2 else [line["loss_mean"] for line in lines]
    assert losses[-1] < losses[0], losses

    final = load_params(tmp_path / "model.safetensors")
    synced = sorted(result.cluster_root.glob("worker-*/work/job-e2e-t*/params/synced.safetensors"))
    assert len(synced) == 2
    assert {_digest(load_params(p)) for p in synced} == {_digest(final)}
