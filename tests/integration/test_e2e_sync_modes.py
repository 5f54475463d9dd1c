"""End to end, overlapped sync: two workers train the demo's tiny model for three rounds while each
round's update travels in the background; the loss falls, and the parameter server's final θ is
every worker's synchronized θ, bit for bit."""

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


async def test_overlapped_sync_ends_with_the_servers_theta_on_every_worker(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=3,
        inner_steps=8,
        max_bytes=300_000,
        sequences_per_slice=64,
        run_id="e2e",
        sync="overlapped",
        keep_updates=True,
        worker_extra=(("job.keep_work_dirs", True),),
        timeout_seconds=200,
    )
    began = time.monotonic()
    result = await run_cluster(settings)
    print(f"e2e overlapped: {time.monotonic() - began:.1f} s from nothing to a stopped cluster")
    scheduler_log = (result.cluster_root / "logs" / "scheduler.log").read_text()[-3000:]
    assert result.scheduler_exit == 0, scheduler_log
    assert result.killed == [] and processes_under(tmp_path) == []

    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert line["workers"] == ["worker-0", "worker-1"] and line["contributors"] == 2
    # NOTE: the training loss, not the held-out one: over three rounds of eight steps the
    # delayed outer Nesterov step with momentum 0.9 sometimes overshoots, with the local proxy
    # (7.25, 6.46, 7.90, about one run in six) and with the eager one (7.19, 6.41, 7.92), while
    # the workers' training loss fell. Overlapped runs now default to momentum 0.8, which did not
    # overshoot in the nine runs docs/WAN.md "Sync modes" lists: too few to assert on a rare event.
    held_out = [line["eval_loss"] for line in lines if "eval_loss" in line]
    print(f"e2e overlapped: held-out loss {held_out}, training loss {[line['loss_mean'] for line in lines]}")
    assert held_out and all(math.isfinite(v) for v in held_out), held_out
    losses = [line["loss_mean"] for line in lines]
    assert losses[-1] < losses[0], losses

    final = load_params(tmp_path / "model.safetensors")
    synced = sorted(result.cluster_root.glob("worker-*/work/job-e2e-t*/params/synced.safetensors"))
    assert len(synced) == 2
    assert {_digest(load_params(p)) for p in synced} == {_digest(final)}
