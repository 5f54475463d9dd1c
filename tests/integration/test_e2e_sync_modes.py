"""End to end, delayed sync: two workers train the demo's tiny model for three rounds while each
round's update travels in the background (overlapped), or with θ in two fragments, each a run of
its own at the parameter server, pushed at staggered points of a round (streaming); the loss
falls, and the parameter server's final θ (the fragments' runs merged) is every worker's
synchronized θ, bit for bit."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import pytest

from tendril.scheduler.cluster import processes_under
from tendril.scheduler.demo import DemoSettings, run_cluster
from tendril_diloco.params import Params, load_params

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]


def _digest(params: Params) -> str:
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(params[name].contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("sync", ["overlapped", "streaming"])
async def test_delayed_sync_ends_with_the_servers_theta_on_every_worker(tmp_path: Path, sync: str) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=3,
        inner_steps=8,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="e2e",
        sync=sync,
        keep_updates=True,
        worker_extra=(("job.keep_work_dirs", True),),
        timeout_seconds=200,
    )
    began = time.monotonic()
    result = await run_cluster(settings)
    print(f"e2e {sync}: {time.monotonic() - began:.1f} s from nothing to a stopped cluster")
    scheduler_log = (result.cluster_root / "logs" / "scheduler.log").read_text()[-3000:]
    assert result.scheduler_exit == 0, scheduler_log
    assert result.killed == [] and processes_under(tmp_path) == []

    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert line["workers"] == ["worker-0", "worker-1"] and line["contributors"] == 2
    # NOTE: overlapped asserts the training loss, not the held-out one: over three rounds of eight
    # steps the delayed outer Nesterov step with momentum 0.9 sometimes overshot, with the local
    # proxy (7.25, 6.46, 7.90, about one run in six) and with the eager one (7.19, 6.41, 7.92),
    # while the workers' training loss fell. Delayed sync now defaults to momentum 0.5
    # (docs/WAN.md "Outer momentum of a delayed step"): too few runs to assert on a rare event.
    held_out = [line["eval_loss"] for line in lines if "eval_loss" in line]
    print(f"e2e {sync}: held-out loss {held_out}, training loss {[line['loss_mean'] for line in lines]}")
    assert held_out and all(math.isfinite(v) for v in held_out), held_out
    losses = [line["loss_mean"] for line in lines]
    assert losses[-1] < losses[0], losses
    if sync == "streaming" and len(held_out) >= 2:
        assert held_out[-1] < held_out[0], held_out

    final = load_params(tmp_path / "model.safetensors")
    synced = sorted(result.cluster_root.glob("worker-*/work/job-e2e-t*/params/synced.safetensors"))
    assert len(synced) == 2  # fragments' runs merged (streaming) or the one run: every worker's θ is the server's
    assert {_digest(load_params(p)) for p in synced} == {_digest(final)}
