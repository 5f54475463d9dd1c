"""DiLoCo executor pieces without the network: config, θ0, Δ and updates, batches, the loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from safetensors.torch import save_file

from tendril.core.streaming import XXH3_128, digest_file
from tendril_diloco.config import parse_config
from tendril_diloco.data import Batches, load_slice
from tendril_diloco.errors import ExecutorError
from tendril_diloco.params import (
    apply_update,
    compute_delta,
    load_into,
    load_params,
    save_params,
    snapshot,
)
from tendril_diloco.trainer import PUBLISH_RETRY, Trainer
from tendril_models import DataSpec, ModelError, ModelSpec, get_task
from tendril_models import build as models_build
from tendril_models.batches import batch_size
from tendril_proto.scheduler.v1 import scheduler_pb2
from tendril_sdk import (
    BridgeError,
    BridgeReason,
    Directive,
    DirectiveKind,
    FetchedParameters,
    PublishedParameters,
    ReceivedUpdate,
    SentUpdate,
    Slice,
    read_error,
)

MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 16, "vocab_size": 33, "n_positions": 8}
CAUSAL = get_task("causal-lm")


def build_model(model: dict[str, Any], seed: int) -> torch.nn.Module:
    """The model a job with ``model`` (the old GPT-2 form) and no data section trains."""
    config = parse_config(_config(model=model, seed=seed))
    return models_build.build_model(config.model, config.data_spec, seed=seed)


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "run_id": "run-1",
        "parameter_server": "127.0.0.1:1",
        "rounds": 2,
        "seed": 7,
        "model": MODEL,
        "inner": {"lr": 0.01, "warmup_steps": 0, "batch_size": 4},
        **extra,
    }


def test_config_defaults_and_errors() -> None:
    cfg = parse_config(_config())
    assert cfg.inner.batch_size == 4 and cfg.inner.weight_decay == 0.1 and cfg.codec == "fp32"
    assert cfg.receive_timeout == 300.0  # 10 × the 30 s round timeout
    # Numbers that came through a protobuf Struct are floats.
    struct = parse_config(_config(rounds=3.0, model={"vocab_size": 33.0, "n_positions": 8.0, "resid_pdrop": 0.5}))
    assert struct.rounds == 3
    assert struct.model.config == {"model_type": "gpt2", "vocab_size": 33, "n_positions": 8, "resid_pdrop": 0.5}
    assert isinstance(struct.model.config["vocab_size"], int)
    assert struct.model.task == "causal-lm" and struct.data is None
    assert struct.data_spec.tensors == {"input_ids": {"dtype": "int32", "shape": [8]}}
    assert struct.data_spec.vocab_size == 33
    # The worker's bridge knows the codecs (and refuses others); the executor passes the name on.
    assert parse_config(_config(codec="int4")).codec == "int4"
    for bad, needle in [
        ({"run_id": ""}, "run_id"),
        ({"parameter_server": "nowhere"}, "parameter_server"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": 1.5}, "whole number"),
        ({"codec": 8}, "codec"),
        ({"mixed_precision": "fp64"}, "mixed_precision"),
        ({"inner": {"batch_size": 0}}, "batch_size"),
        ({"inner": {"momentum": 0.9}}, "unknown inner keys"),
    ]:
        with pytest.raises(ExecutorError) as err:
            parse_config(_config(**bad))
        assert needle in err.value.message and err.value.reason == "BAD_JOB_CONFIG"
    # The new form: a task and a config (or a source), and the data set's summary.
    data = DataSpec.from_manifest({"vocab_size": 33, "seq_len": 8}).to_dict()
    new = parse_config(_config(model={"task": "causal-lm", "config": {"model_type": "llama"}}, data=data))
    assert new.model == ModelSpec("causal-lm", {"model_type": "llama"}) and new.data_spec.seq_len == 8
    assert parse_config(_config(mixed_precision="auto")).mixed_precision == "auto"
    for bad_model, needle in [
        ({"task": "translation"}, "translation"),
        ({"task": "causal-lm", "config": {"n_layer": 2}}, "model_type"),
        ({"source": "ftp://host/model.tar"}, "source"),
    ]:
        with pytest.raises(ExecutorError) as err:
            parse_config(_config(model=bad_model))
        assert needle in err.value.message and err.value.reason == "BAD_MODEL_CONFIG"


def test_same_seed_same_theta0_and_tied_weights_once() -> None:
    a, b = snapshot(build_model(MODEL, 7)), snapshot(build_model(MODEL, 7))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = snapshot(build_model(MODEL, 8))
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert "lm_head.weight" not in a and "transformer.wte.weight" in a


def test_model_must_fit_the_data() -> None:
    # A job without a data section and a model without vocab_size/n_positions gets GPT-2's own
    # sizes; a data set whose sequences are longer than the model's context is refused.
    config = parse_config(
        _config(
            model={"n_layer": 1, "n_positions": 4},
            data=DataSpec.from_manifest({"vocab_size": 33, "seq_len": 8}).to_dict(),
        )
    )
    with pytest.raises(ModelError) as err:
        models_build.build_model(config.model, config.data_spec, seed=0)
    assert "8 tokens" in err.value.message and "n_positions" in err.value.message


def test_delta_and_update_round_trip(tmp_path: Path) -> None:
    model = build_model(MODEL, 1)
    start = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.25)
    local = snapshot(model)
    delta = compute_delta(start, local)
    assert all(torch.allclose(d, torch.full_like(d, -0.25)) for d in delta.values())
    save_params(delta, tmp_path / "updates" / "delta.safetensors")
    assert not list((tmp_path / "updates").glob(".*.tmp"))
    again = load_params(tmp_path / "updates" / "delta.safetensors")
    assert all(torch.equal(again[k], delta[k]) for k in delta)
    # The outer update u = -Δ lands exactly on the local parameters.
    theta = apply_update(start, {k: -v for k, v in delta.items()})
    load_into(model, theta)
    assert all(torch.allclose(snapshot(model)[k], local[k]) for k in local)
    with pytest.raises(ExecutorError) as err:
        apply_update(start, {"nope": torch.zeros(1)})
    assert err.value.reason == "TENSOR_NAMES"
    # In place: the same values in start's own tensors; a bad shape changes nothing.
    before = {k: v.clone() for k, v in start.items()}
    bad = {k: torch.zeros(1) if i == len(start) - 1 else torch.ones_like(v) for i, (k, v) in enumerate(start.items())}
    with pytest.raises(ExecutorError) as err:
        apply_update(start, bad, in_place=True)
    assert err.value.reason == "UPDATE_SHAPE" and all(torch.equal(start[k], before[k]) for k in start)
    same = apply_update(start, {k: -v for k, v in delta.items()}, in_place=True)
    assert all(same[k] is start[k] and torch.equal(same[k], theta[k]) for k in start)


def test_apply_update_in_place_gives_torch_add_bits() -> None:
    """θ + u in place (one numpy add, off torch's thread pool) equals torch's add, bit for bit,
    for contiguous and strided θ, a bf16 update and a θ that needs torch (requires grad)."""
    gen = torch.Generator().manual_seed(3)
    start = {
        "a": torch.randn(1001, generator=gen),
        "b": torch.randn(64, 48, generator=gen).t(),  # strided
        "c": torch.randn(33, generator=gen) * 1e-38,  # subnormal sums
    }
    update = {
        "a": torch.randn(1001, generator=gen) * 1e-3,
        "b": (torch.randn(48, 64, generator=gen) * 1e-3).to(torch.bfloat16),
        "c": torch.randn(33, generator=gen) * 1e-39,
    }
    want = {k: v + update[k].to(torch.float32) for k, v in start.items()}
    got = apply_update({k: v.clone() if k != "b" else v for k, v in start.items()}, update, in_place=True)
    assert all(torch.equal(got[k].view(torch.int32), want[k].view(torch.int32)) for k in want)
    leaf = {"w": torch.zeros(5, requires_grad=True)}
    with pytest.raises(RuntimeError):  # as torch's add_ on a leaf that requires grad
        apply_update(leaf, {"w": torch.ones(5)}, in_place=True)


def test_load_into_keeps_optimizer_state() -> None:
    model = build_model(MODEL, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    ids = torch.randint(0, 33, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    before = {id(p): opt.state[p]["exp_avg"].clone() for p in model.parameters()}
    load_into(model, {k: torch.zeros_like(v) for k, v in snapshot(model).items()})
    assert all(torch.equal(opt.state[p]["exp_avg"], before[id(p)]) for p in model.parameters())
    assert all(float(p.detach().abs().sum()) == 0.0 for p in model.parameters())


def _slice(path: Path, rows: int, seq: int = 8, start: int = 0) -> Path:
    ids = (torch.arange(rows * seq, dtype=torch.int32).reshape(rows, seq) + start) % 33
    save_file({"input_ids": ids}, str(path))
    return path


async def test_batches_run_across_slices(tmp_path: Path) -> None:
    files = [_slice(tmp_path / f"s{i}.safetensors", 5, start=i) for i in range(2)]
    queue = list(files)

    async def next_slice() -> Path:
        return queue.pop(0)

    batches = Batches(next_slice, 4, lambda path: load_slice(path, CAUSAL, 8))
    sizes = [batch_size(await batches.next()) for _ in range(4)]
    assert sizes == [4, 1, 4, 1]
    assert not queue


async def test_an_unreadable_slice_is_skipped_and_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"damaged")
    files = [tmp_path / "bad.safetensors", _slice(tmp_path / "good.safetensors", 4)]
    skipped: list[str] = []

    async def next_slice() -> Path:
        return files.pop(0)

    batches = Batches(
        next_slice, 4, lambda path: load_slice(path, CAUSAL, 8), on_skip=lambda path, err: skipped.append(path.name)
    )
    assert batch_size(await batches.next()) == 4
    assert skipped == ["bad.safetensors"]
    # Slice after slice unreadable: the job ends, saying so.
    (tmp_path / "bad2.safetensors").write_bytes(b"damaged")

    async def only_bad() -> Path:
        return tmp_path / "bad2.safetensors"

    hopeless = Batches(only_bad, 4, lambda path: load_slice(path, CAUSAL, 8), max_skips_in_a_row=3)
    with pytest.raises(ExecutorError) as err:
        await hopeless.next()
    assert err.value.reason == "NO_READABLE_SLICE" and "3 slices in a row" in err.value.message


def test_slice_checks(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError) as err:
        load_slice(_slice(tmp_path / "long.safetensors", 2, seq=16), CAUSAL, 8)
    assert err.value.reason == "SEQ_TOO_LONG"
    save_file({"other": torch.zeros(2, 2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ExecutorError):
        load_slice(tmp_path / "bad.safetensors", CAUSAL, 8)


@dataclasses.dataclass
class _FakeBridge:
    """An in-memory stand-in for the job bridge: a scheduler that syncs every ``sync_every``
    batches (3) and a parameter server whose update is u = -0.5 · Δ (so θ_new = θ_start - 0.5·Δ)."""

    work_dir: Path
    reports: list[tuple[str, int, dict[str, float]]] = dataclasses.field(default_factory=list)
    covered: list[int] = dataclasses.field(default_factory=list)  # batches each report covers
    sizes: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # batch reports' samples, seconds
    sync_every: int = 3
    deltas: dict[int, dict[str, torch.Tensor]] = dataclasses.field(default_factory=dict)
    digests: int = 0  # pushes that came with the writer's digest
    done_after: int = 2  # rounds until the scheduler says DONE
    weights: dict[int, float] = dataclasses.field(default_factory=dict)
    theta: dict[str, torch.Tensor] | None = None
    round: int = 0
    slices: int = 0

    async def next_slice(self) -> Slice:
        self.slices += 1
        path = _slice(self.work_dir / f"data-{self.slices}.safetensors", 8, start=self.slices)
        return Slice(path, path.name, scheduler_pb2.SliceAssignment(), 0.0)

    async def publish_parameters(self, rel: str, **kw: Any) -> PublishedParameters:
        accepted = self.theta is None
        if accepted:
            self.theta = load_params(self.work_dir / rel)
        return PublishedParameters(accepted, self.round)

    async def fetch_parameters(self, rel: str) -> FetchedParameters:
        assert self.theta is not None
        save_params(self.theta, self.work_dir / rel)
        return FetchedParameters(self.work_dir / rel, rel, self.round)

    async def send_update(self, rel: str, round_index: int, weight: float, *, digest: str = "") -> SentUpdate:
        if digest:  # the writer's digest is the file's (the parameter server would check it)
            assert digest == f"xxh3-128:{digest_file(self.work_dir / rel, XXH3_128).hexdigest()}"
            self.digests += 1
        self.deltas[round_index] = load_params(self.work_dir / rel)
        self.weights[round_index] = weight
        return SentUpdate((self.work_dir / rel).stat().st_size, 0.01)

    async def receive_update(
        self, round_index: int, *, path: str = "", timeout_seconds: float, reuse_files: bool = False
    ) -> ReceivedUpdate:
        assert self.theta is not None
        update = {k: -0.5 * v for k, v in self.deltas[round_index].items()}
        self.theta = {k: self.theta[k] + update[k] for k in self.theta}
        self.round = round_index + 1
        dest = self.work_dir / (path or f"updates/round-{round_index}.safetensors")
        save_params(update, dest)
        return ReceivedUpdate(dest, dest.name, dest.stat().st_size, 0.02, 1)

    async def report_progress(self, kind: str, round_index: int, **kw: Any) -> Directive:
        self.reports.append((kind, round_index, dict(kw.get("metrics") or {})))
        self.covered.append(kw.get("batches", 1) if kind == "batch" else 0)
        batches = sum(
            n for (k, r, _), n in zip(self.reports, self.covered, strict=True) if k == "batch" and r == round_index
        )
        if kind == "batch":
            self.sizes.append((kw["batch_size"], kw["batch_seconds"]))
            return Directive(DirectiveKind.SCHEDULE_UPDATE, max(0, self.sync_every - batches), round_index)
        if kind == "update_received" and round_index + 1 >= self.done_after:
            return Directive(DirectiveKind.DONE, 0, round_index)
        return Directive(DirectiveKind.CONTINUE, 0, round_index)


async def test_trainer_loop_sends_delta_and_applies_update(tmp_path: Path) -> None:
    bridge = _FakeBridge(tmp_path)
    trainer = Trainer(parse_config(_config(keep_updates=True)), bridge, log=lambda *a, **k: None)  # type: ignore[arg-type]
    theta0 = snapshot(build_model(MODEL, 7))
    await trainer.run()
    kinds = [k for k, _, _ in bridge.reports]
    assert kinds == ["batch"] * 3 + ["update_sent", "metrics", "update_received"] + ["batch"] * 3 + [
        "update_sent",
        "metrics",
        "update_received",
    ]
    assert bridge.weights == {0: 12.0, 1: 12.0}  # 3 batches of 4 sequences each round
    metrics = [m for k, _, m in bridge.reports if k == "metrics"]
    assert metrics[0]["samples"] == 12 and metrics[0]["batches"] == 3 and metrics[0]["loss"] > 0
    assert metrics[0]["train_seconds"] >= metrics[0]["compute_seconds"] > 0 and metrics[0]["data_wait_seconds"] >= 0
    # θ after round 0 = θ0 + u0 = θ0 - 0.5·Δ0: the worker continued from exactly that point,
    # so its round-1 Δ is measured against it.
    assert bridge.deltas[0].keys() == theta0.keys()
    final = snapshot(trainer._plain_model)
    expected = {k: theta0[k] - 0.5 * bridge.deltas[0][k] - 0.5 * bridge.deltas[1][k] for k in theta0}
    assert all(torch.allclose(final[k], expected[k], atol=1e-6) for k in theta0)
    assert any(float(d.abs().max()) > 0 for d in bridge.deltas[0].values())
    assert not list((tmp_path / "updates").glob("delta-*"))  # deltas are removed once sent
    assert sorted(p.name for p in (tmp_path / "updates").glob("round-*")) == [
        "round-0.safetensors",
        "round-1.safetensors",
    ]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_trainer_hands_off_in_memory_with_the_writers_digest(tmp_path: Path, memory_dir: Path) -> None:
    """With handoff/ offered (linked to a folder in memory), Δ and the updates go there, Δ in
    kept files written in place from the second round on, sent with the digest computed while
    writing; without keep_updates nothing of a round is left behind."""
    (tmp_path / "updates").mkdir()
    (tmp_path / "handoff").symlink_to(memory_dir, target_is_directory=True)
    bridge = _FakeBridge(tmp_path, done_after=4)
    events: list[tuple[str, dict[str, Any]]] = []
    trainer = Trainer(parse_config(_config(rounds=4)), bridge, log=lambda e, **f: events.append((e, f)))  # type: ignore[arg-type]
    await trainer.run()
    assert [f["folder"] for e, f in events if e == "handoff.folder"] == ["handoff"]
    # rounds 1-3: written in place into the kept files (the second one was made in round 0)
    assert len(bridge.deltas) == 4 and bridge.digests == 3
    assert _names(memory_dir / ".reused") == ["delta-0", "delta-1"]
    assert not [n for n in _names(memory_dir) if n.startswith(("delta-", "round-"))]
    assert _names(tmp_path / "updates") == []


@dataclasses.dataclass
class _RefusingBridge(_FakeBridge):
    """The fake bridge, answering chosen rounds' SendUpdate/ReceiveUpdate with an error."""

    send_errors: dict[int, BridgeError] = dataclasses.field(default_factory=dict)
    receive_errors: dict[int, BridgeError] = dataclasses.field(default_factory=dict)
    fetches: int = 0

    async def fetch_parameters(self, rel: str) -> FetchedParameters:
        self.fetches += 1
        return await super().fetch_parameters(rel)

    async def send_update(self, rel: str, round_index: int, weight: float, *, digest: str = "") -> SentUpdate:
        if error := self.send_errors.pop(round_index, None):
            if error.reason == BridgeReason.ALREADY_COMMITTED:
                await super().send_update(rel, round_index, weight, digest=digest)  # an earlier try did count
            raise error
        return await super().send_update(rel, round_index, weight, digest=digest)

    async def receive_update(
        self, round_index: int, *, path: str = "", timeout_seconds: float, reuse_files: bool = False
    ) -> ReceivedUpdate:
        if error := self.receive_errors.pop(round_index, None):
            raise error
        return await super().receive_update(
            round_index, path=path, timeout_seconds=timeout_seconds, reuse_files=reuse_files
        )


def _trainer(bridge: _FakeBridge, events: list[tuple[str, dict[str, Any]]]) -> Trainer:
    log = lambda event, **fields: events.append((event, fields))  # noqa: E731
    return Trainer(parse_config(_config()), bridge, log=log)  # type: ignore[arg-type]


async def test_trainer_rejoins_on_the_reasons_that_mean_a_missed_round(tmp_path: Path) -> None:
    bridge = _RefusingBridge(
        tmp_path,
        send_errors={0: BridgeError(grpc.StatusCode.FAILED_PRECONDITION, "round 0 closed", reason="ROUND_CLOSED")},
        receive_errors={
            1: BridgeError(grpc.StatusCode.DEADLINE_EXCEEDED, "round 1 still open", reason="ROUND_STILL_OPEN")
        },
    )
    events: list[tuple[str, dict[str, Any]]] = []
    await _trainer(bridge, events).run()
    missed = [(e, f["round"], f["reason"]) for e, f in events if e in ("round.missed", "round.update_missed")]
    assert missed == [("round.missed", 0, "ROUND_CLOSED"), ("round.update_missed", 1, "ROUND_STILL_OPEN")]
    assert bridge.fetches == 3  # the start, then once per missed round
    assert bridge.reports[-1][:2] == ("update_received", 1)  # and the scheduler said DONE
    # An update that already counted (a retried send) is not an error.
    counted = _RefusingBridge(
        tmp_path / "again",
        send_errors={0: BridgeError(grpc.StatusCode.ALREADY_EXISTS, "counted", reason="ALREADY_COMMITTED")},
    )
    (tmp_path / "again").mkdir()
    await _trainer(counted, []).run()
    assert counted.fetches == 1
    sent = [m for k, r, m in counted.reports if k == "metrics" and r == 0]
    assert sent[0]["bytes_sent"] == 0


async def test_trainer_fails_on_other_refusals_of_the_same_code(tmp_path: Path) -> None:
    bridge = _RefusingBridge(
        tmp_path,
        send_errors={0: BridgeError(grpc.StatusCode.FAILED_PRECONDITION, "no run_id", reason="JOB_CONFIG_MISSING")},
    )
    with pytest.raises(BridgeError) as err:
        await _trainer(bridge, []).run()
    assert err.value.reason is BridgeReason.JOB_CONFIG_MISSING and bridge.fetches == 1


def test_publishing_retries_only_a_run_that_is_not_open_yet() -> None:
    assert PUBLISH_RETRY.retryable(BridgeError(grpc.StatusCode.NOT_FOUND, "not open", reason="RUN_NOT_OPEN"))
    assert PUBLISH_RETRY.retryable(BridgeError(grpc.StatusCode.UNAVAILABLE, "bridge away"))
    assert not PUBLISH_RETRY.retryable(BridgeError(grpc.StatusCode.NOT_FOUND, "no θ0", reason="FILE_NOT_FOUND"))
    assert PUBLISH_RETRY.deadline == 60.0


def _spawn_executor(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[bytes]:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"job_id": "j", "config": config, "work_dir": str(tmp_path)}))
    return subprocess.Popen(
        [sys.executable, "-m", "tendril_diloco", "--socket", str(tmp_path / "bridge.sock")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "JOB_JSON": str(job), **env},
        start_new_session=True,
    )


def test_executor_process_exits_clearly(tmp_path: Path) -> None:
    no_token = _spawn_executor(tmp_path, _config(), {"TENDRIL_BRIDGE_TOKEN": ""})
    out, _ = no_token.communicate(timeout=60)
    assert no_token.returncode == 2 and b"TENDRIL_BRIDGE_TOKEN" in out
    bad = _spawn_executor(tmp_path, _config(codec=""), {"TENDRIL_BRIDGE_TOKEN": "t"})
    out, _ = bad.communicate(timeout=60)
    assert bad.returncode == 1 and b"codec must be the name of a wire codec" in out
    # The one-line reason JobService makes the FAILED job's reason.
    assert "codec must be the name of a wire codec" in read_error(tmp_path)


def test_executor_process_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    # No bridge listens on the socket: the executor keeps retrying its first call until SIGTERM.
    proc = _spawn_executor(tmp_path, _config(), {"TENDRIL_BRIDGE_TOKEN": "t"})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = b""
        while b"model.ready" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            seen += proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert proc.wait(timeout=10) == 143
        assert time.monotonic() - began < 5
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclasses.dataclass
class _SlowReportBridge(_FakeBridge):
    """Answers a batch report only once the trainer started the next batch (or 0.5 s passed)."""

    step_started: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    overlapped: int = 0

    async def report_progress(self, kind: str, round_index: int, **kw: Any) -> Directive:
        if kind == "batch":
            self.step_started.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.step_started.wait(), 0.5)
                self.overlapped += 1
        return await super().report_progress(kind, round_index, **kw)


async def test_a_batch_report_travels_while_the_next_batch_trains(tmp_path: Path) -> None:
    """The report's round trip is off the training path, and each round still stops at its sync
    point: 3 batches a round, as the directives say, with the last batch's report awaited."""
    bridge = _SlowReportBridge(tmp_path)
    trainer = Trainer(parse_config(_config()), bridge, log=lambda *a, **k: None)  # type: ignore[arg-type]
    step = trainer._step
    loop = asyncio.get_running_loop()

    def step_and_tell(batch: dict[str, torch.Tensor]) -> tuple[float, float]:
        loop.call_soon_threadsafe(bridge.step_started.set)
        return step(batch)

    trainer._step = step_and_tell  # type: ignore[method-assign]
    await trainer.run()
    kinds = [k for k, _, _ in bridge.reports]
    assert kinds == ["batch"] * 3 + ["update_sent", "metrics", "update_received"] + ["batch"] * 3 + [
        "update_sent",
        "metrics",
        "update_received",
    ]
    # In each round the first batch's report was answered while the second batch trained; the
    # reports of the batches just before the sync point are awaited (nothing runs past it).
    assert bridge.overlapped >= 2


async def test_batches_are_reported_together_while_the_sync_point_is_far(tmp_path: Path) -> None:
    """One report covers the batches since the last one (their samples and seconds summed, the
    loss their sample-weighted mean); the round's first batch and every batch once at most
    ``near_batches`` are left are reported at once; the round still ends on the planned batch."""
    bridge = _FakeBridge(tmp_path, sync_every=12)
    trainer = Trainer(
        parse_config(_config()),
        bridge,  # type: ignore[arg-type]
        log=lambda *a, **k: None,
        progress_interval=3600.0,
        near_batches=4,
    )
    await trainer.run()
    kinds = [k for k, _, _ in bridge.reports]
    per_round = ["batch"] * 6 + ["update_sent", "metrics", "update_received"]
    assert kinds == per_round * 2
    # Batch 1 at once (the answer: 11 left); batches 2-8 together, when 4 were left; then each.
    covered = [n for n, k in zip(bridge.covered, kinds, strict=True) if k == "batch"]
    assert covered == [1, 7, 1, 1, 1, 1] * 2
    losses = [m for k, _, m in bridge.reports if k == "batch"]
    batch_reports = list(zip(losses, bridge.sizes, strict=True))
    assert len(batch_reports) == 12
    metrics = [m for k, _, m in bridge.reports if k == "metrics"]
    assert bridge.weights == {0: 48.0, 1: 48.0}  # 12 batches of 4 sequences each round
    for r in range(2):
        mine = batch_reports[6 * r : 6 * r + 6]
        samples = sum(size for _, (size, _) in mine)
        assert samples == metrics[r]["samples"] == 48 and metrics[r]["batches"] == 12
        assert mine[1][1][0] == 28  # 7 batches of 4
        assert sum(seconds for _, (_, seconds) in mine) == pytest.approx(metrics[r]["compute_seconds"])
        weighted = sum(m["loss"] * size for m, (size, _) in mine) / samples
        assert weighted == pytest.approx(metrics[r]["loss"])


async def test_every_batch_is_reported_when_the_interval_is_shorter_than_a_batch(tmp_path: Path) -> None:
    bridge = _FakeBridge(tmp_path, sync_every=8)
    trainer = Trainer(parse_config(_config()), bridge, log=lambda *a, **k: None, progress_interval=0.0)  # type: ignore[arg-type]
    await trainer.run()
    kinds = [k for k, _, _ in bridge.reports]
    assert kinds == (["batch"] * 8 + ["update_sent", "metrics", "update_received"]) * 2
    assert set(bridge.covered) <= {0, 1} and sum(bridge.covered) == 16


async def test_only_the_step_after_a_report_leaves_the_event_loop_thread(tmp_path: Path) -> None:
    """The step that follows a report runs in a worker thread (the loop carries the report's
    call meanwhile); the others run on the loop's thread, sparing two thread wake-ups a batch."""
    bridge = _FakeBridge(tmp_path, sync_every=12)
    trainer = Trainer(
        parse_config(_config()),
        bridge,  # type: ignore[arg-type]
        log=lambda *a, **k: None,
        progress_interval=3600.0,
        near_batches=4,
    )
    step = trainer._step
    on_loop: list[bool] = []
    loop_thread = threading.get_ident()

    def step_and_note(batch: dict[str, torch.Tensor]) -> tuple[float, float]:
        on_loop.append(threading.get_ident() == loop_thread)
        return step(batch)

    trainer._step = step_and_note  # type: ignore[method-assign]
    await trainer.run()
    # Reports after batches 1, 8, 9, 10, 11 and 12 (see the test above): batches 2, 9, 10 and 11
    # ran while one was in flight; batch 11's was awaited before the last batch, 1 away.
    assert on_loop == [True, False, True, True, True, True, True, True, False, False, False, True] * 2


async def test_two_gloo_processes_train_as_one_worker(tmp_path: Path) -> None:
    """processes = 2 on a CPU: a replica process takes every other batch, DDP averages the
    gradients, and the worker still sends one Δ a round, weighted by both processes' samples."""
    from tendril_diloco import distributed

    assert distributed.plan(0, {"CUDA_VISIBLE_DEVICES": ""}) == distributed.Plan(1)
    assert distributed.plan(2, {}) == distributed.Plan(2)
    bridge = _FakeBridge(tmp_path)
    events: list[tuple[str, dict[str, Any]]] = []
    log = lambda event, **fields: events.append((event, fields))  # noqa: E731
    trainer = Trainer(parse_config(_config(processes=2, torch_threads=1)), bridge, log=log)  # type: ignore[arg-type]
    await asyncio.wait_for(trainer.run(), 120)
    assert [f["processes"] for e, f in events if e == "model.ready"] == [2]
    assert bridge.weights == {0: 24.0, 1: 24.0}  # 3 steps of 2 × 4 sequences each round
    assert set(bridge.deltas) == {0, 1}, "one pseudo-gradient a round"
    metrics = [m for k, _, m in bridge.reports if k == "metrics"]
    assert metrics[0]["samples"] == 24 and metrics[0]["batches"] == 3 and math.isfinite(metrics[0]["loss"])
    assert trainer.group is not None and all(p.returncode == 0 for p in trainer.group.replicas)
    import torch.distributed as dist

    assert not dist.is_initialized(), "the process group is gone with the run"


async def test_batches_ask_for_the_next_slice_while_one_trains(tmp_path: Path) -> None:
    files = [_slice(tmp_path / f"s{i}.safetensors", 4, start=i) for i in range(4)]
    asked: list[Path] = []
    release = asyncio.Event()
    cancelled: list[Path] = []

    async def next_slice() -> Path:
        asked.append(files[len(asked)])
        mine = asked[-1]
        try:
            if len(asked) == 3:
                await release.wait()  # the third slice is slow to come
            elif len(asked) == 4:
                await asyncio.Event().wait()  # the fourth never comes
        except asyncio.CancelledError:
            cancelled.append(mine)
            raise
        return mine

    waits: list[float] = []
    batches = Batches(next_slice, 4, lambda path: load_slice(path, CAUSAL, 8), on_wait=waits.append)
    await batches.next()
    await asyncio.sleep(0)
    assert asked == files[:2]  # the second slice was asked for while the first one's batch trained
    await batches.next()  # it came meanwhile: no wait
    await asyncio.sleep(0)
    assert len(asked) == 3 and waits[1] < 0.05
    third = asyncio.ensure_future(batches.next())
    await asyncio.sleep(0.1)
    assert not third.done()  # a slice not there yet is waited for, and the wait is counted
    release.set()
    await third
    assert waits[2] >= 0.1
    await asyncio.sleep(0)
    assert asked == files  # the fourth was asked for as soon as the third was read
    batches.close()  # the fourth, asked for ahead, is dropped: its call is cancelled
    await asyncio.sleep(0)
    assert cancelled == files[3:]


async def test_batches_without_read_ahead_ask_only_when_a_slice_is_used_up(tmp_path: Path) -> None:
    files = [_slice(tmp_path / f"s{i}.safetensors", 4, start=i) for i in range(2)]
    queue = list(files)

    async def next_slice() -> Path:
        return queue.pop(0)

    batches = Batches(next_slice, 4, lambda path: load_slice(path, CAUSAL, 8), read_ahead=False)
    await batches.next()
    await asyncio.sleep(0)
    assert queue == files[1:]


async def test_a_slice_asked_for_ahead_that_failed_fails_the_batch_that_needs_it(tmp_path: Path) -> None:
    first = _slice(tmp_path / "s0.safetensors", 4)
    calls = 0

    async def next_slice() -> Path:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("the data node is gone")
        return first

    batches = Batches(next_slice, 4, lambda path: load_slice(path, CAUSAL, 8))
    await batches.next()  # the first slice trains although the call for the second one failed
    with pytest.raises(RuntimeError, match="the data node is gone"):
        await batches.next()
    batches.close()
