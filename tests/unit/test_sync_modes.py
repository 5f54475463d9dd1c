"""Sync modes: the overlapped correction keeps the synchronized θ the parameter server's, bit for
bit; the trainer trains on while a round's update travels; the scheduler takes the late reports."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from tendril.paramserver.outer import nesterov
from tendril.scheduler.errors import SchedulerError
from tendril.scheduler.jobconfig import parse_job_config
from tendril.scheduler.metrics import WorkerRound, round_line
from tendril.scheduler.run import Progress, ProgressIn, Run
from tendril_diloco.config import parse_config
from tendril_diloco.errors import ExecutorError
from tendril_diloco.params import apply_update, compute_delta, load_params, snapshot
from tendril_diloco.sync import overlaps, rebase
from tendril_diloco.trainer import SYNCED, Trainer
from tendril_sdk import BridgeError, ReceivedUpdate

from .test_diloco_executor import _config, _FakeBridge, _RefusingBridge
from .test_sync_planner_run import _batch, _Clock, _trainers

SHAPES = {"w": (3, 4), "b": (5,)}


def _rand(gen: torch.Generator, scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {k: scale * torch.randn(s, generator=gen, dtype=torch.float32) for k, s in SHAPES.items()}


def test_overlapped_rounds_keep_the_synchronized_theta_the_servers_bit_for_bit() -> None:
    """Two workers, 6 rounds of one-step-delayed updates: inner progress keeps going while each
    update travels, the server steps with outer Nesterov; after every round both workers'
    synchronized θ is the server's exactly, and each local θ is it plus the unsynced progress."""
    gen = torch.Generator().manual_seed(3)
    theta0 = _rand(gen)
    server = {k: v.numpy().ravel().copy() for k, v in theta0.items()}
    momentum: dict[str, np.ndarray | None] = dict.fromkeys(theta0)
    synced = [dict(theta0), dict(theta0)]  # each worker's synchronized θ_r
    local = [dict(theta0), dict(theta0)]
    pushed: list[dict[str, torch.Tensor]] = [{}, {}]
    for r in range(6):
        deltas = []
        for w in range(2):
            local[w] = {k: v + 0.01 * d for (k, v), d in zip(local[w].items(), _rand(gen).values(), strict=True)}
            deltas.append(compute_delta(synced[w], local[w]))
            pushed[w] = dict(local[w])
        # the update of round r travels while each worker makes more inner progress
        progress = [_rand(gen, 0.01) for _ in range(2)]
        for w in range(2):
            local[w] = {k: local[w][k] + progress[w][k] for k in local[w]}
        update = {}
        for k in theta0:
            grad = ((deltas[0][k] + deltas[1][k]) / 2).numpy().ravel()
            server[k], momentum[k], u = nesterov(server[k], momentum[k], grad, lr=0.7, mu=0.9)
            update[k] = torch.from_numpy(u.copy()).reshape(SHAPES[k])
        for w in range(2):
            theta_next = apply_update(synced[w], update)
            local[w] = rebase(local[w], theta_next, pushed[w])
            synced[w] = theta_next
            for k in theta0:
                assert torch.equal(synced[w][k].ravel(), torch.from_numpy(server[k])), (r, w, k)
                assert torch.allclose(local[w][k] - synced[w][k], progress[w][k], atol=1e-5)
    # the correction is u + Δ: the worker's own step stood in for the outer update until it came
    fix = {k: theta_next[k] - pushed[1][k] for k in theta0}
    assert all(torch.allclose(fix[k], update[k] + deltas[1][k], atol=1e-5) for k in theta0)


def test_only_overlapped_rounds_before_the_last_run_in_the_background() -> None:
    assert [overlaps("overlapped", r, 3) for r in range(3)] == [True, True, False]
    assert not any(overlaps("blocking", r, 3) for r in range(3))
    assert parse_config(_config(sync="overlapped")).sync == "overlapped"
    assert parse_config(_config()).sync == "blocking"
    with pytest.raises(ExecutorError, match="sync must be one of"):
        parse_config(_config(sync="eager"))
    assert parse_job_config({"training": {"sync": "overlapped"}}).training.sync == "overlapped"


@dataclasses.dataclass
class _SlowBridge(_FakeBridge):
    """The fake bridge whose ReceiveUpdate takes a while (the pull over a slow link)."""

    delay: float = 0.3

    async def receive_update(self, round_index: int, *, timeout_seconds: float) -> ReceivedUpdate:
        await asyncio.sleep(self.delay)
        return await super().receive_update(round_index, timeout_seconds=timeout_seconds)


async def test_the_trainer_trains_on_while_the_update_travels(tmp_path: Path) -> None:
    bridge = _SlowBridge(tmp_path, sync_every=6)
    config = parse_config(_config(sync="overlapped", keep_updates=True))
    trainer = Trainer(config, bridge, log=lambda *a, **k: None)  # type: ignore[arg-type]
    await trainer.run()
    kinds = [(k, r) for k, r, _ in bridge.reports]
    # round 1's batches are reported before round 0's update was received: training went on
    assert kinds.index(("batch", 1)) < kinds.index(("update_received", 0))
    assert kinds.index(("update_sent", 0)) < kinds.index(("batch", 1))
    assert kinds[-3:] == [("update_sent", 1), ("metrics", 1), ("update_received", 1)]  # the last round blocks
    assert bridge.theta is not None
    synced = load_params(tmp_path / SYNCED)
    final = snapshot(trainer._plain_model)
    for k in bridge.theta:  # the worker's synchronized θ and its model are the server's, bit for bit
        assert torch.equal(synced[k], bridge.theta[k]) and torch.equal(final[k], bridge.theta[k]), k
    # round 1's Δ holds all of its 6 batches' progress, those trained before the update came too
    assert bridge.weights == {0: 24.0, 1: 24.0}


async def test_an_overlapped_update_that_never_comes_means_fetching_theta_again(tmp_path: Path) -> None:
    missed = BridgeError(grpc.StatusCode.DEADLINE_EXCEEDED, "round 0 still open", reason="ROUND_STILL_OPEN")
    bridge = _RefusingBridge(tmp_path, receive_errors={0: missed})
    events: list[str] = []
    config = parse_config(_config(sync="overlapped"))
    trainer = Trainer(config, bridge, log=lambda event, **_: events.append(event))  # type: ignore[arg-type]
    await trainer.run()
    assert "round.update_missed" in events and bridge.fetches == 2  # the start, then after the miss
    assert ("metrics", 0, {"update_missed": 1.0}) in bridge.reports  # the scheduler stops waiting for it
    final = snapshot(trainer._plain_model)
    assert bridge.theta is not None and all(torch.equal(final[k], bridge.theta[k]) for k in final)


def _overlap_run(sync: str) -> tuple[Run, list[dict[str, object]], _Clock, list[str]]:
    config = parse_job_config({"allocation": {"workers": 2}, "training": {"rounds": 3, "inner_steps": 2, "sync": sync}})
    lines: list[dict[str, object]] = []
    clock = _Clock()
    run = Run(config, "run", on_round=lines.append, clock=clock)
    from tendril.scheduler.run import Dataset
    from tendril.scheduler.slices import SliceRef

    slices = tuple(SliceRef(f"slice-{i:05d}.safetensors", 10, "0" * 64, 4) for i in range(4))
    run.set_dataset(Dataset("ds", "127.0.0.1:9", slices, 16, 257))
    return run, lines, clock, _trainers(run, 2)


@pytest.mark.parametrize("sync", ["overlapped", "streaming"])
def test_the_scheduler_takes_the_late_reports_of_overlapped_sync(sync: str) -> None:
    run, lines, clock, jobs = _overlap_run(sync)
    for i, job in enumerate(jobs):
        _batch(run, job, f"w{i}", 0, 1.0)
    clock.t += 1.0
    for i, job in enumerate(jobs):
        run.progress(ProgressIn(job, f"w{i}", Progress.UPDATE_SENT, 0))
    clock.t += 0.5
    for i, job in enumerate(jobs):  # round 1 begins before round 0's update came
        _batch(run, job, f"w{i}", 1, 0.5)
    clock.t += 2.0
    run.progress(ProgressIn(jobs[0], "w0", Progress.METRICS, 0, metrics={"loss": 2.0, "samples": 8}))
    out = run.progress(ProgressIn(jobs[0], "w0", Progress.UPDATE_RECEIVED, 0, metrics={"contributors": 2}))
    assert out.round == 1
    assert lines == []  # w1 pushed round 0 and still pulls it
    run.progress(ProgressIn(jobs[1], "w1", Progress.UPDATE_RECEIVED, 0, metrics={"contributors": 2}))
    assert [line["round"] for line in lines] == [0]
    assert lines[0]["workers"] == ["w0", "w1"]
    # each worker's round 0 (began 99.0) ended when it began round 1 (101.0, its first batch's
    # report less its step time), not when the update came (103.5)
    assert lines[0]["cycle_seconds"] == pytest.approx(2 * 2.0)
    # a worker that missed round 1's update after pushing it does not hold the round open
    for i, job in enumerate(jobs):
        run.progress(ProgressIn(job, f"w{i}", Progress.UPDATE_SENT, 1))
        _batch(run, job, f"w{i}", 2, 0.5)
    run.progress(ProgressIn(jobs[0], "w0", Progress.UPDATE_RECEIVED, 1))
    run.progress(ProgressIn(jobs[1], "w1", Progress.METRICS, 1, metrics={"update_missed": 1.0}))
    assert [line["round"] for line in lines] == [0, 1] and lines[1]["workers"] == ["w0"]
    # had round 1 still been open, the worker that missed it trains it again: its round-1 reports count
    _batch(run, jobs[1], "w1", 1, 0.5)
    with pytest.raises(SchedulerError, match="reported round 0 after round 1"):
        _batch(run, jobs[1], "w1", 0, 0.5)  # no other way back


def test_blocking_sync_still_refuses_a_report_of_a_round_left_behind() -> None:
    run, _lines, _clock, jobs = _overlap_run("blocking")
    _batch(run, jobs[0], "w0", 0, 1.0)
    _batch(run, jobs[0], "w0", 1, 1.0)
    with pytest.raises(SchedulerError, match="reported round 0 after round 1"):
        run.progress(ProgressIn(jobs[0], "w0", Progress.UPDATE_RECEIVED, 0))


def test_a_round_ends_for_a_worker_when_it_began_the_next_one() -> None:
    w = WorkerRound("w0", started_at=0.0, arrived_at=4.0, received_at=9.0, ended_at=4.2)
    line = round_line(0, [w], started=0.0, closed=9.0)
    assert line["cycle_seconds"] == pytest.approx(4.2) and line["sync_seconds"] == pytest.approx(0.2)
