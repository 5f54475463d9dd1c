"""Streaming sync's fragments: the split of θ (deterministic, balanced, every tensor once), the
staggered push schedule, per-fragment overlapped rounds that keep each worker's synchronized θ
the parameter server's bit for bit; the trainer's streaming path; what the scheduler dispatches."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from tendril.core.errors import ConfigError
from tendril.core.streaming import XXH3_128, digest_file
from tendril.core.tensorstream import TensorStreamError
from tendril.paramserver.outer import nesterov
from tendril.scheduler.dispatch import aggregate_config, fragments
from tendril.scheduler.fragments import merge_files, run_ids
from tendril.scheduler.jobconfig import parse_job_config
from tendril_aggregate.main import parse_config as parse_aggregate
from tendril_diloco.config import parse_config
from tendril_diloco.eager import EagerProxy
from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_diloco.fragments import (
    Fragments,
    due,
    merge,
    natural_key,
    push_points,
    split,
    take,
    tensor_bytes,
)
from tendril_diloco.params import load_params, save_params, snapshot
from tendril_diloco.trainer import SYNCED, Trainer
from tendril_sdk import BridgeError, Directive, FetchedParameters, PublishedParameters, ReceivedUpdate, SentUpdate

from .test_diloco_executor import _config, _FakeBridge


def _gpt2_like(layers: int = 12) -> dict[str, torch.Tensor]:
    """Names and shapes of a small GPT-2 (the values do not matter to the split)."""
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (512, 32), "transformer.wpe.weight": (64, 32)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        shapes |= {
            p + "ln_1.weight": (32,),
            p + "attn.c_attn.weight": (32, 96),
            p + "attn.c_attn.bias": (96,),
            p + "attn.c_proj.weight": (32, 32),
            p + "mlp.c_fc.weight": (32, 128),
            p + "mlp.c_proj.weight": (128, 32),
        }
    shapes["transformer.ln_f.weight"] = (32,)
    return {name: torch.zeros(shape) for name, shape in shapes.items()}


def _optimal_max(sizes: list[int], count: int) -> int:
    """The smallest largest-group bytes over every contiguous split (brute force)."""
    best = sum(sizes)
    for cuts in itertools.combinations(range(1, len(sizes)), count - 1):
        bounds = (0, *cuts, len(sizes))
        best = min(best, max(sum(sizes[a:b]) for a, b in itertools.pairwise(bounds)))
    return best


def test_the_split_is_deterministic_balanced_and_covers_every_tensor_once() -> None:
    theta = _gpt2_like()
    shuffled = list(theta.items())
    random.Random(5).shuffle(shuffled)
    for count in (1, 2, 3, 4, 8):
        groups = split(theta, count)
        assert split(dict(shuffled), count) == groups  # the dict's order does not matter
        assert len(groups) == count and all(groups)
        flat = [name for group in groups for name in group]
        assert sorted(flat) == sorted(theta) and len(flat) == len(set(flat))  # every tensor once
        assert flat == sorted(theta, key=natural_key)  # contiguous in natural (layer) order
    # layer 2 before layer 10, not after it
    assert natural_key("transformer.h.2.mlp.c_fc.weight") < natural_key("transformer.h.10.ln_1.weight")
    layered = [name for name in sorted(theta, key=natural_key) if ".h." in name]
    assert [int(n.split(".")[2]) for n in layered] == sorted(int(n.split(".")[2]) for n in layered)
    # two fragments of this model are within 5 % of an even share
    sizes = [sum(tensor_bytes(theta[n]) for n in group) for group in split(theta, 2)]
    assert max(sizes) / (sum(sizes) / 2) < 1.05


def test_the_split_is_the_most_balanced_contiguous_one() -> None:
    gen = random.Random(11)
    for _ in range(40):
        n = gen.randint(1, 9)
        numels = [gen.choice([1, 2, 3, 50, 400, 1000]) for _ in range(n)]
        theta = {f"t.{i}": torch.zeros(k) for i, k in enumerate(numels)}
        for count in range(1, n + 1):
            groups = split(theta, count)
            sizes = [sum(tensor_bytes(theta[name]) for name in group) for group in groups]
            assert len(groups) == count and all(groups)
            assert max(sizes) == _optimal_max([4 * k for k in numels], count), (numels, count)
    with pytest.raises(ExecutorError, match="fragments must be between 1 and") as err:
        split({"a": torch.zeros(2)}, 2)
    assert err.value.reason == ExecutorReason.BAD_JOB_CONFIG


def test_the_push_schedule_staggers_the_fragments_across_a_round() -> None:
    assert push_points(12, 3) == (12, 4, 8)
    assert push_points(12, 1) == (12,)
    assert push_points(2, 4) == (2, 1, 1, 1)  # fewer steps than fragments: several at once

    def pushes(points: tuple[int, ...], sync_at: int, last: bool) -> list[tuple[int, int]]:
        done: set[int] = set()
        out = []
        for b in range(1, sync_at + 1):
            for f in due(points, b, at_sync_point=b == sync_at, last_round=last, pushed=done):
                done.add(f)
                out.append((b, f))
        return out

    points = push_points(12, 3)
    assert pushes(points, 12, False) == [(4, 1), (8, 2), (12, 0)]
    # the scheduler ended the round early: what was not pushed goes at the sync point
    assert pushes(points, 6, False) == [(4, 1), (6, 0), (6, 2)]
    # the run's last round syncs every fragment at its end
    assert pushes(points, 12, True) == [(12, 0), (12, 1), (12, 2)]
    with pytest.raises(ExecutorError, match="inner_steps"):
        push_points(0, 2)


@pytest.mark.parametrize("proxy", ["local", "eager"])
def test_streaming_rounds_keep_every_fragment_the_servers_bit_for_bit(proxy: str) -> None:
    """Two workers, F = 3, five rounds: fragment 1 and 2 pushed inside the round, fragment 0 at
    its end; each fragment's run steps with outer Nesterov on its own; every update arrives after
    more inner progress. After each arrival both workers' synchronized θ is the servers' exactly,
    and each local θ is it plus the progress made since each fragment's push. With the eager
    proxy each fragment trains on from its proxy point and rebuilds its own run's outer momentum
    from its updates."""
    eager = proxy == "eager"
    gen = torch.Generator().manual_seed(8 if eager else 7)
    shapes = {"emb": (6, 4), "h.0.w": (4, 4), "h.0.b": (4,), "h.1.w": (4, 4), "h.1.b": (4,), "head": (4, 3)}
    theta0 = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    make = (lambda: EagerProxy(lr=0.7, momentum=0.9)) if eager else None
    workers = [Fragments(theta0, 3, proxy=make), Fragments(theta0, 3, proxy=make)]
    if eager:
        assert Fragments(theta0, 3).proxy_point(0, {}) is None  # the local proxy: no point of its own
    groups = workers[0].groups
    assert workers[1].groups == groups and len(workers[0]) == 3
    server = {k: v.numpy().ravel().copy() for k, v in theta0.items()}  # the fragments' runs, by name
    momentum: dict[str, np.ndarray | None] = dict.fromkeys(theta0)
    local = [dict(theta0), dict(theta0)]
    since_push = [{k: torch.zeros(s) for k, s in shapes.items()} for _ in range(2)]

    def train(w: int) -> None:
        step = {k: 0.01 * torch.randn(s, generator=gen) for k, s in shapes.items()}
        local[w] = {k: local[w][k] + step[k] for k in shapes}
        since_push[w] = {k: since_push[w][k] + step[k] for k in shapes}

    for r in range(5):
        for f in (1, 2, 0):  # the staggered order of a round
            for w in range(2):
                train(w)
            deltas = []
            for w in range(2):
                round_index, delta = workers[w].push(f, local[w])
                assert round_index == r and set(delta) == set(groups[f])
                if eager:
                    point = workers[w].proxy_point(f, delta)
                    assert point is not None and set(point) == set(groups[f])
                    local[w] = {**local[w], **point}  # the fragment trains on from its proxy point
                deltas.append(delta)
                for k in groups[f]:
                    since_push[w][k] = torch.zeros(shapes[k])
            for w in range(2):  # the update travels while training goes on
                train(w)
            update = {}
            for k in groups[f]:
                grad = ((deltas[0][k] + deltas[1][k]) / 2).numpy().ravel()
                server[k], momentum[k], u = nesterov(server[k], momentum[k], grad, lr=0.7, mu=0.9)
                update[k] = torch.from_numpy(u.copy()).reshape(shapes[k])
            for w in range(2):
                local[w] = workers[w].arrived(f, update, local[w], contributors=2)
                synced = workers[w].synced()
                for k in shapes:
                    assert torch.equal(synced[k].ravel(), torch.from_numpy(server[k])), (r, f, w, k)
                    assert torch.allclose(local[w][k] - synced[k], since_push[w][k], atol=1e-5), (r, f, w, k)
                if eager:
                    state = workers[w].states[f].proxy
                    assert state is not None and state.momentum is not None and set(state.momentum) == set(groups[f])
                    for k in groups[f]:  # each fragment's proxy holds its own run's momentum
                        expected = torch.from_numpy(momentum[k].copy()).reshape(shapes[k])  # type: ignore[union-attr]
                        assert torch.allclose(state.momentum[k], expected, rtol=1e-4, atol=1e-6), (r, f, k)
    assert all(state.round == 5 for state in workers[0].states)
    if eager:  # a missed update: the fragment's proxy starts afresh with its run's θ
        workers[0].reset(1, theta0, 9)
        fresh = workers[0].states[1]
        assert fresh.proxy is not None and fresh.proxy.momentum is None and fresh.proxy.base is None


def test_fragment_bookkeeping_refuses_what_cannot_happen() -> None:
    theta = {"a": torch.ones(2), "b": torch.ones(3)}
    frags = Fragments(theta, 2)
    frags.push(0, theta)
    with pytest.raises(ExecutorError, match="its update has not come yet") as err:
        frags.push(0, theta)
    assert err.value.reason == ExecutorReason.FRAGMENT_ORDER
    with pytest.raises(ExecutorError, match="has no push out"):
        frags.arrived(1, {"b": torch.zeros(3)}, dict(theta))
    # a missed update: the fragment takes its run's θ and round, and may push again
    fetched = {"a": torch.full((2,), 5.0), "b": torch.zeros(3)}
    frags.reset(0, fetched, 4)
    assert frags.push(0, theta)[0] == 4 and torch.equal(frags.synced()["a"], fetched["a"])
    assert merge([take(theta, g) for g in frags.groups]).keys() == theta.keys()
    with pytest.raises(ExecutorError, match="fragments overlap"):
        merge([theta, {"a": torch.ones(2)}])
    assert frags.balance() == pytest.approx(3 / 2.5)


def test_the_scheduler_dispatches_fragments_only_in_streaming_sync(tmp_path: Path) -> None:
    streaming = parse_job_config({"training": {"sync": "streaming", "fragments": 3}})
    assert streaming.training.fragments == 3 and parse_job_config({}).training.fragments == 2
    assert aggregate_config(streaming, "r")["fragments"] == 3 and fragments(streaming) == 3
    overlapped = parse_job_config({"training": {"sync": "overlapped", "fragments": 3}})
    assert "fragments" not in aggregate_config(overlapped, "r") and fragments(overlapped) == 0
    assert run_ids("r", 0) == ["r"] and run_ids("r", 2) == ["r-f0", "r-f1"]
    with pytest.raises(ConfigError, match="fragments"):
        parse_job_config({"training": {"sync": "streaming", "fragments": 0}})
    # the aggregate job opens, follows and closes one run per fragment
    assert parse_aggregate({"run_id": "r", "expected_workers": 2, "fragments": 2.0}).runs == ["r-f0", "r-f1"]
    assert parse_aggregate({"run_id": "r", "expected_workers": 2}).runs == ["r"]
    # θ for evaluation and export: the fragments' files merged by name
    parts = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    save_file({"x": np.ones(2, np.float32)}, str(parts[0]))
    save_file({"y": np.zeros(3, np.float32)}, str(parts[1]))
    merge_files(parts, tmp_path / "theta.safetensors")
    assert sorted(load_file(str(tmp_path / "theta.safetensors"))) == ["x", "y"]
    with pytest.raises(TensorStreamError, match="more than once"):
        merge_files([parts[0], parts[0]], tmp_path / "twice.safetensors")


@dataclasses.dataclass
class _FragmentBridge(_FakeBridge):
    """The fake bridge with one run per fragment (u = −0.5 · Δ each), whose pulls take a while."""

    runs: dict[int, dict[str, torch.Tensor]] = dataclasses.field(default_factory=dict)
    run_rounds: dict[int, int] = dataclasses.field(default_factory=dict)
    pushed: dict[tuple[int, int], dict[str, torch.Tensor]] = dataclasses.field(default_factory=dict)
    pushed_weights: dict[tuple[int, int], float] = dataclasses.field(default_factory=dict)
    events: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    delay: float = 0.3

    async def publish_parameters(self, rel: str, *, fragment: int | None = None, **kw: Any) -> PublishedParameters:
        assert fragment is not None
        accepted = fragment not in self.runs
        if accepted:
            self.runs[fragment] = load_params(self.work_dir / rel)
        return PublishedParameters(accepted, self.run_rounds.get(fragment, 0))

    async def fetch_parameters(self, rel: str, *, fragment: int | None = None) -> FetchedParameters:  # type: ignore[override]
        assert fragment is not None
        save_params(self.runs[fragment], self.work_dir / rel)
        return FetchedParameters(self.work_dir / rel, rel, self.run_rounds.get(fragment, 0))

    async def send_update(  # type: ignore[override]
        self, rel: str, round_index: int, weight: float, *, fragment: int | None = None, digest: str = ""
    ) -> SentUpdate:
        assert fragment is not None and round_index == self.run_rounds.get(fragment, 0)
        if digest:  # the writer's digest is the file's (the parameter server would check it)
            assert digest == f"xxh3-128:{digest_file(self.work_dir / rel, XXH3_128).hexdigest()}"
        self.pushed[(fragment, round_index)] = load_params(self.work_dir / rel)
        self.pushed_weights[(fragment, round_index)] = weight
        self.events.append((f"push-f{fragment}", round_index))
        return SentUpdate((self.work_dir / rel).stat().st_size, 0.01)

    async def receive_update(  # type: ignore[override]
        self,
        round_index: int,
        *,
        path: str = "",
        timeout_seconds: float,
        fragment: int | None = None,
        reuse_files: bool = False,
    ) -> ReceivedUpdate:
        assert fragment is not None
        await asyncio.sleep(self.delay)
        update = {k: -0.5 * v for k, v in self.pushed[(fragment, round_index)].items()}
        self.runs[fragment] = {k: self.runs[fragment][k] + update[k] for k in self.runs[fragment]}
        self.run_rounds[fragment] = round_index + 1
        save_params(update, self.work_dir / path)
        return ReceivedUpdate(self.work_dir / path, path, 100, 0.02, 1)

    async def report_progress(self, kind: str, round_index: int, **kw: Any) -> Directive:
        self.events.append((kind, round_index))
        return await super().report_progress(kind, round_index, **kw)


async def test_the_trainer_streams_fragments_and_ends_at_the_servers_theta(tmp_path: Path) -> None:
    """F = 2, 6 batches a round: fragment 1 goes after 3 batches, fragment 0 at the sync point,
    each while training goes on; the last round syncs both at its end. The worker's model and
    its synchronized θ end equal to the fragments' runs merged, bit for bit."""
    bridge = _FragmentBridge(tmp_path, sync_every=6)
    config = parse_config(_config(sync="streaming", fragments=2, keep_updates=True))
    trainer = Trainer(config, bridge, log=lambda *a, **k: None)  # type: ignore[arg-type]
    await trainer.run()
    ev = bridge.events
    assert trainer._frags is not None
    groups = trainer._frags.groups
    # round 0: fragment 1 pushed mid-round, fragment 0 at the sync point; round 1 trains before
    # round 0's updates came; the last round pushes both at its end and blocks
    last_batch_0 = max(i for i, e in enumerate(ev) if e == ("batch", 0))
    assert ev.index(("batch", 0)) < ev.index(("push-f1", 0)) < last_batch_0 < ev.index(("push-f0", 0))
    assert ev.index(("push-f1", 0)) < ev.index(("update_sent", 0))
    assert ev.index(("batch", 1)) < ev.index(("update_received", 0))
    assert ev[-2:] == [("metrics", 1), ("update_received", 1)] and ("update_sent", 1) in ev[-5:]
    assert ev.index(("push-f1", 1)) > max(i for i, e in enumerate(ev) if e == ("batch", 1))
    # weights: the samples since each fragment's last push (4 a batch)
    assert bridge.pushed_weights == {(1, 0): 12.0, (0, 0): 24.0, (1, 1): 36.0, (0, 1): 24.0}
    assert all(set(bridge.pushed[(f, r)]) == set(groups[f]) for f, r in bridge.pushed)
    merged = merge([bridge.runs[0], bridge.runs[1]])
    final, synced = snapshot(trainer._plain_model), load_params(tmp_path / SYNCED)
    assert final.keys() == merged.keys()
    for k in merged:
        assert torch.equal(synced[k], merged[k]), (k, "synced", (synced[k] - merged[k]).abs().max())
        assert torch.equal(final[k], merged[k]), (k, "final", (final[k] - merged[k]).abs().max())
    metrics = [m for k, _, m in bridge.reports if k == "metrics"]
    assert [m["samples"] for m in metrics] == [24, 24] and metrics[0]["bytes_sent"] > 0


async def test_the_trainer_streams_fragments_with_the_eager_proxy(tmp_path: Path) -> None:
    """Streaming with the eager proxy (the run's outer settings given): each fragment's proxy
    rebuilds its run's momentum, and the worker ends at the fragments' runs merged, bit for bit."""
    bridge = _FragmentBridge(tmp_path, sync_every=6)
    config = parse_config(_config(sync="streaming", fragments=2, keep_updates=True, outer_lr=0.7, outer_momentum=0.9))
    trainer = Trainer(config, bridge, log=lambda *a, **k: None)  # type: ignore[arg-type]
    await trainer.run()
    assert trainer._frags is not None
    assert all(s.proxy is not None and s.proxy.momentum is not None for s in trainer._frags.states)
    merged = merge([bridge.runs[0], bridge.runs[1]])
    final, synced = snapshot(trainer._plain_model), load_params(tmp_path / SYNCED)
    for k in merged:
        assert torch.equal(synced[k], merged[k]) and torch.equal(final[k], merged[k]), k


@dataclasses.dataclass
class _MissingBridge(_FragmentBridge):
    """Fragment 1's update of round 0 never comes (the round closed without this worker)."""

    async def receive_update(  # type: ignore[override]
        self,
        round_index: int,
        *,
        path: str = "",
        timeout_seconds: float,
        fragment: int | None = None,
        reuse_files: bool = False,
    ) -> ReceivedUpdate:
        if (fragment, round_index) == (1, 0):
            self.run_rounds[1] = 1  # the run went on: round 1 is open
            raise BridgeError(grpc.StatusCode.DEADLINE_EXCEEDED, "round 0 still open", reason="ROUND_STILL_OPEN")
        return await super().receive_update(
            round_index, path=path, timeout_seconds=timeout_seconds, fragment=fragment, reuse_files=reuse_files
        )


async def test_a_fragment_whose_update_never_comes_fetches_its_runs_theta(tmp_path: Path) -> None:
    bridge = _MissingBridge(tmp_path, sync_every=6, delay=0.05)
    events: list[str] = []
    config = parse_config(_config(sync="streaming", fragments=2))
    trainer = Trainer(config, bridge, log=lambda event, **_: events.append(event))  # type: ignore[arg-type]
    await trainer.run()
    assert "fragment.update_missed" in events
    metrics = {r: m for k, r, m in bridge.reports if k == "metrics"}
    assert metrics[0]["update_missed"] == 1.0 and "update_missed" not in metrics[1]
    assert ("update_received", 0) not in bridge.events  # the scheduler was told the round was missed
    # fragment 1 took its run's θ again and synced round 1 from there; the run ends at the servers' θ
    assert (1, 1) in bridge.pushed
    merged = merge([bridge.runs[0], bridge.runs[1]])
    final = snapshot(trainer._plain_model)
    assert all(torch.equal(final[k], merged[k]) for k in merged)
