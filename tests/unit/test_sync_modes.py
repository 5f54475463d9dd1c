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

from tendril.core.errors import ConfigError
from tendril.paramserver.outer import nesterov
from tendril.scheduler.errors import SchedulerError
from tendril.scheduler.jobconfig import parse_job_config
from tendril.scheduler.metrics import WorkerRound, round_line
from tendril.scheduler.run import Progress, ProgressIn, Run
from tendril_diloco.config import parse_config
from tendril_diloco.eager import EagerProxy, make_proxy, miss
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

    async def receive_update(
        self, round_index: int, *, path: str = "", timeout_seconds: float, reuse_files: bool = False
    ) -> ReceivedUpdate:
        await asyncio.sleep(self.delay)
        return await super().receive_update(
            round_index, path=path, timeout_seconds=timeout_seconds, reuse_files=reuse_files
        )


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


@pytest.mark.parametrize("sync", ["overlapped", "streaming"])
def test_a_round_whose_update_every_worker_missed_still_ends(sync: str) -> None:
    run, lines, _clock, jobs = _overlap_run(sync)
    for i, job in enumerate(jobs):
        _batch(run, job, f"w{i}", 0, 1.0)
        run.progress(ProgressIn(job, f"w{i}", Progress.UPDATE_SENT, 0))
        _batch(run, job, f"w{i}", 1, 0.5)
    for i, job in enumerate(jobs):  # the update was gone for both: they fetched θ instead
        run.progress(ProgressIn(job, f"w{i}", Progress.METRICS, 0, metrics={"update_missed": 1.0}))
    assert [line["round"] for line in lines] == [0] and lines[0]["workers"] == ["w0", "w1"]
    for i, job in enumerate(jobs):  # and the rounds after it end as usual
        run.progress(ProgressIn(job, f"w{i}", Progress.UPDATE_SENT, 1))
        _batch(run, job, f"w{i}", 2, 0.5)
        run.progress(ProgressIn(job, f"w{i}", Progress.UPDATE_RECEIVED, 1))
    assert [line["round"] for line in lines] == [0, 1]


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


def _server_step(
    server: dict[str, np.ndarray], momentum: dict[str, np.ndarray | None], mean: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The parameter server's outer step (services/tendril/paramserver/outer.py) on the mean Δ: u."""
    update = {}
    for k, shape in SHAPES.items():
        server[k], momentum[k], u = nesterov(server[k], momentum[k], mean[k].numpy().ravel(), lr=0.7, mu=0.9)
        update[k] = torch.from_numpy(u.copy()).reshape(shape)
    return update


def test_the_eager_proxy_rebuilds_the_servers_momentum_and_predicts_its_step() -> None:
    """Three workers, eight rounds of the server's real outer step: worker 0's proxy rebuilds the
    server's momentum buffer from the updates alone; its first proxy step is the outer step on its
    own Δ; in a round where the others send what they sent the round before, its proxy point is
    the server's next θ (up to rounding)."""
    gen = torch.Generator().manual_seed(5)
    theta0 = _rand(gen)
    server = {k: v.numpy().ravel().copy() for k, v in theta0.items()}
    momentum: dict[str, np.ndarray | None] = dict.fromkeys(theta0)
    proxy = EagerProxy(lr=0.7, momentum=0.9)
    synced = dict(theta0)
    drift = _rand(gen, 0.05)
    deltas = [{k: drift[k] + v for k, v in _rand(gen, 0.02).items()} for _ in range(3)]
    for r in range(8):
        deltas[0] = {k: drift[k] + v for k, v in _rand(gen, 0.02).items()}
        if r % 2 == 0:  # the others' Δ change too; in odd rounds they repeat the last ones
            deltas[1:] = [{k: drift[k] + v for k, v in _rand(gen, 0.02).items()} for _ in range(2)]
        point = proxy.point(synced, deltas[0])
        mean = {k: (deltas[0][k] + deltas[1][k] + deltas[2][k]) / 3 for k in SHAPES}
        update = _server_step(server, momentum, mean)
        theta_next = apply_update(synced, update)
        if r == 0:  # no round before: the outer step on this worker's own Δ, −lr·(1 + μ)·Δ
            assert all(torch.allclose(point[k], synced[k] - 0.7 * 1.9 * deltas[0][k], atol=1e-6) for k in SHAPES)
        elif r % 2 == 1:
            for k in SHAPES:
                assert torch.allclose(point[k], theta_next[k], atol=1e-5), (r, k)
        proxy.arrived(update, 3)
        assert proxy.momentum is not None and proxy.workers == 3
        for k, shape in SHAPES.items():
            expected = torch.from_numpy(momentum[k].copy()).reshape(shape)  # type: ignore[union-attr]
            assert torch.allclose(proxy.momentum[k], expected, rtol=1e-4, atol=1e-6), (r, k)
        synced = theta_next
    proxy.reset()  # θ fetched again: the next proxy step is a first one
    assert proxy.momentum is None and proxy.base is None
    again = proxy.point(synced, deltas[0])
    assert all(torch.allclose(again[k], synced[k] - 1.33 * deltas[0][k], atol=1e-6) for k in SHAPES)


def test_eager_overlapped_rounds_keep_the_synchronized_theta_the_servers_bit_for_bit() -> None:
    """Two workers train on from their eager proxy points while each update travels: every
    synchronized θ is the server's exactly, each local θ is it plus the unsynced progress, and
    the proxy point is nearer the server's next θ than the local θ (the ``local`` proxy) is."""
    gen = torch.Generator().manual_seed(9)
    theta0 = _rand(gen)
    server = {k: v.numpy().ravel().copy() for k, v in theta0.items()}
    momentum: dict[str, np.ndarray | None] = dict.fromkeys(theta0)
    proxies = [EagerProxy(lr=0.7, momentum=0.9) for _ in range(2)]
    synced = [dict(theta0), dict(theta0)]
    local = [dict(theta0), dict(theta0)]
    drift = _rand(gen, 0.03)
    for r in range(6):
        deltas, pushed, old_local = [], [], []
        for w in range(2):
            local[w] = {k: local[w][k] - drift[k] + 0.005 * v for k, v in _rand(gen).items()}
            deltas.append(compute_delta(synced[w], local[w]))
            old_local.append(local[w])
            pushed.append(proxies[w].point(synced[w], deltas[w]))
            local[w] = dict(pushed[w])  # round r+1 trains from the proxy point
        progress = [_rand(gen, 0.01) for _ in range(2)]
        for w in range(2):
            local[w] = {k: local[w][k] + progress[w][k] for k in local[w]}
        update = _server_step(server, momentum, {k: (deltas[0][k] + deltas[1][k]) / 2 for k in SHAPES})
        for w in range(2):
            theta_next = apply_update(synced[w], update)
            proxies[w].arrived(update, 2)
            local[w] = rebase(local[w], theta_next, pushed[w])
            synced[w] = theta_next
            for k in theta0:
                assert torch.equal(synced[w][k].ravel(), torch.from_numpy(server[k])), (r, w, k)
                assert torch.allclose(local[w][k] - synced[w][k], progress[w][k], atol=1e-5)
            miss_eager, miss_local = miss(theta_next, pushed[w], update), miss(theta_next, old_local[w], update)
            assert miss_eager < miss_local, (r, w, miss_eager, miss_local)
            # the local proxy's miss is ‖u_r + Δ_r‖ / ‖u_r‖: its own step stood in for u_r
            plus = sum(float((update[k] + deltas[w][k]).double().square().sum()) for k in SHAPES)
            size = sum(float(update[k].double().square().sum()) for k in SHAPES)
            assert miss_local == pytest.approx((plus / size) ** 0.5, rel=1e-4)


def test_the_proxy_is_chosen_by_delayed_proxy_and_local_keeps_the_local_theta() -> None:
    assert make_proxy("local", lr=0.7, momentum=0.9) is None
    assert make_proxy("eager", lr=None, momentum=None) is None  # no outer settings given: local
    assert isinstance(make_proxy("eager", lr=0.7, momentum=0.9), EagerProxy)
    cfg = parse_config(_config(sync="overlapped", outer_lr=0.7, outer_momentum=0.9))
    assert cfg.delayed_proxy == "eager" and cfg.outer_lr == 0.7 and cfg.outer_momentum == 0.9
    assert parse_config(_config()).outer_lr is None
    with pytest.raises(ExecutorError, match="delayed_proxy must be one of"):
        parse_config(_config(delayed_proxy="stale"))
    with pytest.raises(ExecutorError, match="outer_momentum"):
        parse_config(_config(outer_momentum=1.0))
    job = parse_job_config({"training": {"sync": "overlapped"}})
    assert job.training.delayed_proxy == "eager"
    assert parse_job_config({"training": {"delayed_proxy": "local"}}).training.delayed_proxy == "local"
    with pytest.raises(ConfigError, match="delayed_proxy"):
        parse_job_config({"training": {"delayed_proxy": "stale"}})
    # outer momentum left out: 0.9 with blocking sync, 0.5 with a delayed outer step; given: as given
    assert parse_job_config({}).training.outer_momentum == 0.9
    for sync in ("overlapped", "streaming"):
        assert parse_job_config({"training": {"sync": sync}}).training.outer_momentum == 0.5
        given = parse_job_config({"training": {"sync": sync, "outer_momentum": 0.9}})
        assert given.training.outer_momentum == 0.9
    assert parse_job_config({"training": {"sync": "overlapped", "outer_momentum": 0.0}}).training.outer_momentum == 0
    # the scheduler passes the proxy and the run's outer step to every training job
    from tendril.scheduler.dispatch import aggregate_config, train_config
    from tendril.scheduler.run import Dataset
    from tendril.scheduler.slices import SliceRef

    run = parse_job_config({"training": {"sync": "overlapped", "outer_lr": 0.5, "outer_momentum": 0.7}})
    dataset = Dataset("ds", "127.0.0.1:9", (SliceRef("s.safetensors", 10, "0" * 64, 4),), 16, 257)
    train = train_config(run, "run", "127.0.0.1:1", dataset)
    assert (train["delayed_proxy"], train["outer_lr"], train["outer_momentum"]) == ("eager", 0.5, 0.7)
    default = parse_job_config({"training": {"sync": "streaming"}})
    assert aggregate_config(default, "run")["outer_momentum"] == 0.5  # the parameter server steps with it
    assert train_config(default, "run", "127.0.0.1:1", dataset)["outer_momentum"] == 0.5
    executor = parse_config(train)
    proxy = make_proxy(executor.delayed_proxy, lr=executor.outer_lr, momentum=executor.outer_momentum)
    assert proxy is not None and (proxy.lr, proxy.mu) == (0.5, 0.7)


async def _overlapped_deltas(tmp_path: Path, **extra: object) -> tuple[_SlowBridge, Trainer]:
    bridge = _SlowBridge(tmp_path, sync_every=6, delay=0.1)
    config = parse_config(_config(sync="overlapped", keep_updates=True, **extra))
    misses: list[float] = []
    trainer = Trainer(
        config,
        bridge,  # type: ignore[arg-type]
        log=lambda event, **kw: misses.append(kw["proxy_miss"]) if event == "round.rebased" else None,
    )
    await trainer.run()
    assert len(misses) == 1 and misses[0] >= 0  # round 0's rebase, with how far its proxy point was
    assert bridge.theta is not None
    synced, final = load_params(tmp_path / SYNCED), snapshot(trainer._plain_model)
    for k in bridge.theta:  # the worker's synchronized θ and its model are the server's, bit for bit
        assert torch.equal(synced[k], bridge.theta[k]) and torch.equal(final[k], bridge.theta[k]), k
    return bridge, trainer


async def test_the_trainer_trains_on_from_the_eager_proxy_point(tmp_path: Path) -> None:
    """The same run with the local and the eager proxy: round 0 is the same; round 1's inner steps
    start from another point (θ_1's Δ differs), and the run ends at the server's θ either way."""
    local, local_trainer = await _overlapped_deltas(tmp_path / "local", delayed_proxy="local", outer_lr=0.7)
    eager, eager_trainer = await _overlapped_deltas(tmp_path / "eager", outer_lr=0.7, outer_momentum=0.9)
    assert local_trainer._proxy is None and eager_trainer._proxy is not None
    assert eager_trainer._proxy.momentum is not None  # rebuilt from round 0's update
    assert all(torch.equal(local.deltas[0][k], eager.deltas[0][k]) for k in local.deltas[0])
    assert any(not torch.equal(local.deltas[1][k], eager.deltas[1][k]) for k in local.deltas[1])
