"""Held-out evaluation at the scheduler (no network): the eval role, its slices (held-out only,
cycling), its results joining metrics.jsonl, losing it without failing the run; the summary
table and loss.png with held-out figures; the eval executor's config and round logic."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tendril.cli.status_view import progress_text
from tendril.scheduler.errors import SchedulerError
from tendril.scheduler.evaluation import NO_SPLIT, MetricsUpdater, due, eval_config, export_due, model_spec
from tendril.scheduler.jobconfig import parse_job_config
from tendril.scheduler.metrics import MetricsFile, read_metrics
from tendril.scheduler.plot import plot_loss
from tendril.scheduler.report import summary_table
from tendril.scheduler.run import Dataset, Directive, Endpoints, OfferIn, Progress, ProgressIn, Role, Run
from tendril.scheduler.slices import SliceRef
from tendril_diloco.errors import ExecutorError
from tendril_diloco.evaluate import EvalConfig, closed_round, parse_eval_config
from tendril_sdk import RunState

EP = Endpoints("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
TRAIN = tuple(SliceRef(f"slice-{i:05d}.safetensors", 10, "0" * 64, 4) for i in range(4))
HELD_OUT = tuple(SliceRef(f"eval-{i:05d}.safetensors", 10, "1" * 64, 4) for i in range(2))


def _run(rounds: int = 2, held_out: tuple[SliceRef, ...] = HELD_OUT, **evaluation: Any) -> Run:
    config = parse_job_config({"allocation": {"workers": 1}, "training": {"rounds": rounds}, "evaluation": evaluation})
    run = Run(config, "run")
    run.set_dataset(Dataset("ds", "127.0.0.1:9", TRAIN, 16, 257, eval_slices=held_out))
    return run


def _eval_member(run: Run, worker: str = "w0", lease: str = "lease-e") -> str:
    run.register_request("req-e", Role.EVAL)
    member, reason = run.consider_offer(OfferIn("req-e", worker, lease, EP))
    assert member is not None, reason
    run.evaluation.start(member.job_id)
    return member.job_id


def test_eval_role_is_asked_for_once_and_may_share_a_worker() -> None:
    run = _run()
    assert run.needs(Role.EVAL) == 1
    run.register_request("req-t", Role.TRAIN)
    trainer, _ = run.consider_offer(OfferIn("req-t", "w0", "lease-t", EP))
    assert trainer is not None
    job = _eval_member(run, worker="w0")  # beside the trainer (and the parameter server)
    assert job.startswith("run-e")
    assert run.needs(Role.EVAL) == 0
    member, reason = run.consider_offer(OfferIn("req-e", "w1", "lease-e2", EP))
    assert member is None and "every eval lease" in reason


def test_eval_job_gets_only_held_out_slices_cycling() -> None:
    run = _run()
    job = _eval_member(run)
    names = [run.assign_slice(job, "w0", [])[0].slice.name for _ in range(5)]
    assert names == [HELD_OUT[0].name, HELD_OUT[1].name, HELD_OUT[0].name, HELD_OUT[1].name, HELD_OUT[0].name]
    assert not set(names) & {s.name for s in TRAIN}
    # and a training job is never given a held-out slice
    run.register_request("req-t", Role.TRAIN)
    trainer, _ = run.consider_offer(OfferIn("req-t", "w1", "lease-t", EP))
    assert trainer is not None
    run.add_trainer(trainer)
    given = {run.assign_slice(trainer.job_id, "w1", [])[0].slice.name for _ in range(12)}
    assert given == {s.name for s in TRAIN}


def test_results_reach_metrics_whichever_comes_first(tmp_path: Path) -> None:
    run = _run(rounds=3)
    metrics = MetricsFile(tmp_path / "metrics.jsonl")
    updater = MetricsUpdater(metrics.path, run.evaluation, run.completed_rounds)
    run.evaluation.on_result = updater.result
    job = _eval_member(run)

    def close(index: int) -> None:  # what Run._check_rounds and the service do when a round closes
        line = {"round": index, "loss_mean": 3.0 - index}
        run.completed_rounds.append(line)
        metrics.append(updater.decorate(line))

    close(0)
    out = run.progress(ProgressIn(job, "w0", Progress.METRICS, 0, metrics={"eval_loss": 2.5, "eval_examples": 8}))
    assert out.directive is Directive.CONTINUE
    # round 1 evaluated before its line was written (the eval job can be faster than the trainers' reports)
    run.progress(ProgressIn(job, "w0", Progress.METRICS, 1, metrics={"eval_loss": 2.2, "eval_perplexity": 9.0}))
    close(1)
    close(2)
    out = run.progress(ProgressIn(job, "w0", Progress.METRICS, 2, metrics={"eval_loss": 2.0, "loss": 1.0}))
    assert out.directive is Directive.DONE  # the last round is evaluated: the eval job may end
    lines = read_metrics(metrics.path)
    assert [line.get("eval_loss") for line in lines] == [2.5, 2.2, 2.0]
    assert lines[0]["eval_examples"] == 8 and lines[1]["eval_perplexity"] == 9.0
    assert lines[0]["loss_mean"] == 3.0  # the training figures stay as they were
    assert "loss" not in lines[2] or lines[2]["loss"] != 1.0  # only eval_* keys are taken
    assert run.completed_rounds[0]["eval_loss"] == 2.5  # the summary table sees them too
    assert not run.evaluation.waiting()


def test_losing_the_eval_job_never_fails_the_run() -> None:
    run = _run(max_lost=1)
    assert run.config.allocation.max_lost == 6
    _eval_member(run, lease="lease-a")
    run.lose("lease-a", "worker gone")
    assert not run.failed and run.lost == 0
    assert run.needs(Role.EVAL) == 1  # replaced like a trainer
    _eval_member(run, lease="lease-b")
    run.lose("lease-b", "worker gone again")
    assert not run.failed
    assert run.needs(Role.EVAL) == 0
    assert "2 eval jobs were lost (evaluation.max_lost = 1)" in run.evaluation.off_reason


def test_a_run_without_its_last_evaluation_says_why() -> None:
    run = _run()
    assert "no worker took the eval job" in run.evaluation.missing_reason(300)
    job = _eval_member(run)
    assert "did not come within evaluation.timeout_seconds (300 s)" in run.evaluation.missing_reason(300)
    run.evaluation.job_ended(job)  # e.g. it failed after the last round closed: not replaced then
    assert not run.evaluation.waiting()
    assert "ended before it evaluated the last round" in run.evaluation.missing_reason(300)
    run = _run()
    job = _eval_member(run)
    out = run.progress(ProgressIn(job, "w0", Progress.FINISHED, 0))
    assert out.directive is Directive.DONE and not run.evaluation.waiting()
    assert "ended before it evaluated the last round" in run.evaluation.missing_reason(300)
    run.evaluation.report(1, {"eval_loss": 1.0})
    assert run.evaluation.missing_reason(300) == ""
    assert _run(held_out=()).evaluation.missing_reason(300) == ""  # off, and it said so already


def test_no_held_out_split_turns_evaluation_off_and_says_so() -> None:
    run = _run(held_out=())
    assert run.needs(Role.EVAL) == 0
    assert run.evaluation.off_reason == NO_SPLIT == "no held-out split in the data set; evaluation off"
    assert not _run(enabled=False).needs(Role.EVAL)


def test_an_unknown_job_is_not_served_held_out_slices() -> None:
    run = _run()
    _eval_member(run)
    with pytest.raises(SchedulerError) as err:
        run.assign_slice("run-e99", "w0", [])
    assert err.value.reason == "UNKNOWN_JOB"


def test_exports_during_the_run_every_k_rounds() -> None:
    assert [r for r in range(7) if export_due(r, 2, 7)] == [1, 3, 5]  # the end exports round 6
    assert not any(export_due(r, 0, 7) for r in range(7))


def test_every_rounds_and_the_last_round_are_due() -> None:
    assert [r for r in range(7) if due(r, 3, 7)] == [2, 5, 6]
    assert [r for r in range(3) if due(r, 1, 3)] == [0, 1, 2]
    config = EvalConfig("r", "h:1", rounds=7, model={}, data={}, every_rounds=3)
    assert [r for r in range(7) if config.due(r)] == [2, 5, 6]


def test_eval_job_config_carries_the_trainers_run() -> None:
    config = parse_job_config({"evaluation": {"every_rounds": 2, "export_every_rounds": 3, "max_examples": 64}})
    train = {"run_id": "r", "parameter_server": "h:1", "model": {"n_layer": 2}, "seed": 4, "data": {"task": "x"}}
    dataset = Dataset("ds", "127.0.0.1:9", TRAIN, 16, 257, eval_slices=HELD_OUT)
    got = eval_config(config, train, dataset)
    assert got["model"] == {"task": "causal-lm", "config": {"model_type": "gpt2", "n_layer": 2}}
    assert (got["every_rounds"], got["export_every_rounds"], got["eval_slices"], got["seed"]) == (2, 3, 2, 4)
    assert got["data"] == {"task": "x"}
    v1 = eval_config(config, {**train, "data": {}}, dataset)["data"]
    assert v1["tensors"] == {"input_ids": {"dtype": "int32", "shape": [16]}} and v1["eot_id"] == 256
    parsed = parse_eval_config(json.loads(json.dumps({**got, "data": {"task": "causal-lm"}})))
    assert (parsed.every_rounds, parsed.eval_slices, parsed.max_examples, parsed.rounds) == (2, 2, 64, 4)
    assert model_spec({"task": "masked-lm", "config": {}}) == {"task": "masked-lm", "config": {}}
    with pytest.raises(ExecutorError, match="every_rounds must be >= 1"):
        parse_eval_config({**got, "every_rounds": 0})
    with pytest.raises(ExecutorError, match="parameter_server"):
        parse_eval_config({**got, "parameter_server": "nowhere"})


def test_the_closed_round_of_a_watch_status() -> None:
    assert closed_round(RunState.OPEN, 0) == -1  # round 0 open (or closing): no θ after it yet
    assert closed_round(RunState.OPEN, 3) == 2
    assert closed_round(RunState.FINISHED, 3) == 3


def test_summary_table_and_plot_show_held_out_figures(tmp_path: Path) -> None:
    lines = [
        {
            "round": 0,
            "workers": ["w0"],
            "loss_mean": 3.1,
            "loss": {"w0": 3.1},
            "eval_loss": 2.9,
            "eval_perplexity": 18.2,
        },
        {"round": 1, "workers": ["w0"], "loss_mean": 2.5, "loss": {"w0": 2.5}},
    ]
    table = summary_table(lines)
    head, _, first, second = table.splitlines()
    assert "eval loss" in head and "eval ppl" in head and "eval acc" not in head
    assert "2.900" in first and "18.20" in first
    assert second.split()[3] == "-"  # round 1 was not evaluated
    assert "eval loss" in summary_table([{"round": 0, "loss_mean": 1.0}])
    plot_loss(lines, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert not math.isnan(lines[0]["eval_loss"])


def test_status_shows_held_out_figures_first() -> None:
    text = progress_text({"round": 2, "eval_loss": 2.25, "eval_examples": 64, "eval_seconds": 0.5, "alpha": 1})
    assert text.startswith("round=2 eval_loss=2.25")


class _Fetched:
    def __init__(self, round_: int) -> None:
        self.path = Path("/nonexistent")
        self.round = round_


class _FakeBridge:
    """WatchRun statuses and FetchParameters rounds as scripted; reports recorded."""

    def __init__(self, statuses: list[Any], theta_rounds: list[int], done_at: int) -> None:
        self.statuses = statuses
        self.theta_rounds = theta_rounds
        self.done_at = done_at
        self.reports: list[tuple[str, int, dict[str, float]]] = []

    async def watch_run(self, **_: Any) -> Any:
        for status in self.statuses:
            yield status

    async def fetch_parameters(self, _path: Any) -> _Fetched:
        return _Fetched(self.theta_rounds.pop(0))

    async def report_progress(self, kind: Any, round_: int, *, metrics: Any = None) -> Any:
        from tendril_sdk import Directive, DirectiveKind

        self.reports.append((str(kind), round_, dict(metrics or {})))
        return Directive(DirectiveKind.DONE if round_ >= self.done_at else DirectiveKind.CONTINUE)


def _status(round_: int, state: RunState = RunState.OPEN) -> Any:
    from tendril_sdk.bridge import RunStatus

    return RunStatus("r", round_, False, (), 1, 4, state)


async def test_evaluator_reports_due_rounds_once_each_until_done() -> None:
    from tendril_diloco.evaluate import Evaluator
    from tendril_diloco.logs import configure

    config = EvalConfig("r", "h:1", rounds=4, model={}, data={}, every_rounds=2)
    statuses = [_status(0), _status(1), _status(2), _status(2), _status(3), _status(3, RunState.FINISHED)]
    # θ is fetched only once a due round (1, then the last, 3) closed: θ that starts round 2, then 4
    bridge = _FakeBridge(statuses, [2, 4], done_at=3)
    evaluator = Evaluator(config, bridge, None, None, configure("test-eval"))  # type: ignore[arg-type]
    evaluator._evaluate = lambda _path: {"eval_loss": 2.0, "eval_examples": 4.0}  # type: ignore[method-assign]
    evaluator.held_out = [{}]
    evaluator.load_held_out = _noop  # type: ignore[method-assign]
    await evaluator.run()
    assert [(kind, r) for kind, r, _ in bridge.reports] == [("metrics", 1), ("metrics", 3)]
    assert bridge.reports[0][2]["eval_loss"] == 2.0 and "eval_seconds" in bridge.reports[0][2]


async def _noop() -> None:
    return None


async def test_exporter_writes_the_runs_model_with_its_tokenizer(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tendril.scheduler.evaluation import data_summary
    from tendril.scheduler.export import Exporter
    from tendril_models import DataSpec, ModelSpec
    from tendril_models.build import build_model

    dataset = Dataset("ds", "127.0.0.1:9", TRAIN, 16, 257, tokenizer="bytes")
    train = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16}, "seed": 3}
    built = build_model(
        ModelSpec.from_dict(model_spec(train["model"])), DataSpec.from_dict(data_summary(train, dataset)), seed=3
    )
    theta = {name: (p.detach() * 2).contiguous() for name, p in built.named_parameters()}
    save_file(theta, str(tmp_path / "theta.safetensors"))
    exporter = Exporter(tmp_path / "out", dataset, train, channel=lambda _address: None, run_id="r")  # type: ignore[arg-type,return-value]
    path = await exporter.export_theta(tmp_path / "theta.safetensors", 2)
    assert path == tmp_path / "out" / "model" and exporter.exported_round == 1
    loaded = AutoModelForCausalLM.from_pretrained(path)
    assert all(torch.equal(p, theta[name]) for name, p in loaded.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer("ab")["input_ids"] == [97, 98] and tokenizer.eos_token_id == 256
    assert await exporter.try_export(lambda: exporter.export_theta(tmp_path / "missing", 3), when="test") is False


def test_the_scheduler_starts_without_torch() -> None:
    """Export and evaluation load torch only in worker threads when they run: a scheduler
    process must not (importing it on the event loop stalls lease renewals). The torch-free
    parts of tendril_models (tasks, spec, errors) check job.toml and may be imported."""
    import subprocess
    import sys

    code = (
        "import sys, tendril.scheduler.service, tendril.scheduler.driver, tendril.scheduler.export, "
        "tendril.scheduler.evaluation, tendril.cli.model; "
        "assert 'torch' not in sys.modules and 'tendril_models.build' not in sys.modules, 'torch imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
