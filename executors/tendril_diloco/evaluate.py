"""``python -m tendril_diloco.evaluate --socket {SOCKET_PATH}``: the held-out evaluation job
(class ``eval``, name ``diloco``) of a DiLoCo run.

It builds the run's model (the same spec, seed and LoRA adapter as the trainers), takes the held-out slices
the scheduler assigns it (NextSlice; an eval job is only ever given the data set's
``eval_slices``) and keeps them, follows the run's rounds at the parameter server (WatchRun),
and after every ``every_rounds``-th round — and always the last — fetches θ (FetchParameters),
evaluates it and reports ``eval_loss``, ``eval_perplexity`` / ``eval_accuracy`` and
``eval_examples`` as a METRICS progress report of that round. It ends when the scheduler says
DONE or the run is over and its last round was evaluated.

Exit codes: 0 done; 1 the evaluation failed (the last line of the log says why); 2 a bad
command line or environment; 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tendril_diloco.entry import run
from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_diloco.logs import EventLog, configure
from tendril_sdk import (
    DEFAULT_RETRY,
    BridgeClient,
    BridgeReason,
    DirectiveKind,
    JobDescriptor,
    ProgressKind,
    RunState,
    tracing,
)

PARAMS = "params/eval.safetensors"
# NOTE: the eval job is dispatched once the parameter server answers, but a restarted server
# reopens the run a moment later: RUN_NOT_OPEN is waited out like an unreachable bridge.
WATCH_RETRY = dataclasses.replace(
    DEFAULT_RETRY, reasons=frozenset({BridgeReason.RUN_NOT_OPEN}), attempts=None, deadline=300.0
)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The eval job's dispatch config (docs/ARCHITECTURE.md "Eval job config")."""

    run_id: str
    parameter_server: str
    rounds: int
    model: Mapping[str, Any]
    data: Mapping[str, Any]
    seed: int = 0
    every_rounds: int = 1
    eval_slices: int = 1
    batch_size: int = 8
    max_examples: int = 0  # 0: every held-out example
    torch_threads: int = 0
    finetune: Mapping[str, Any] | None = None  # the run's LoRA adapter: θ is the adapter, on the base checkpoint
    fragments: int = 0  # streaming sync: θ is this many fragments' runs, merged by name; 0: one run

    def due(self, round_index: int) -> bool:
        """Whether θ after ``round_index`` is evaluated."""
        return round_index == self.rounds - 1 or (round_index + 1) % self.every_rounds == 0


def _bad(message: str) -> ExecutorError:
    return ExecutorError(f"eval job config: {message}", reason=ExecutorReason.BAD_JOB_CONFIG)


def _whole(raw: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
        raise _bad(f"{key} must be a whole number, got {value!r}")
    if int(value) < minimum:
        raise _bad(f"{key} must be >= {minimum}, got {int(value)}")
    return int(value)


def _ints(value: Any) -> Any:
    """A config that travelled as a protobuf Struct has only floats; sizes must be ints again."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def parse_eval_config(raw: Mapping[str, Any]) -> EvalConfig:
    """EvalConfig from the dispatch config; a clear error names the first bad key."""
    run_id, ps = raw.get("run_id"), raw.get("parameter_server")
    if not isinstance(run_id, str) or not run_id:
        raise _bad("run_id (the DiLoCo run's id at the parameter server) is required")
    if not isinstance(ps, str) or ":" not in ps:
        raise _bad(f"parameter_server must be the parameter server's host:port, got {ps!r}")
    model, data = raw.get("model"), raw.get("data")
    if not isinstance(model, Mapping) or not isinstance(data, Mapping):
        raise _bad("model and data must be objects (the run's model spec and data set summary)")
    finetune = raw.get("finetune")
    if finetune is not None and not isinstance(finetune, Mapping):
        raise _bad("finetune must be an object (the run's LoRA settings)")
    return EvalConfig(
        run_id=run_id,
        parameter_server=ps,
        rounds=_whole(raw, "rounds", 0, 1),
        model=_ints(dict(model)),
        data=_ints(dict(data)),
        seed=_whole(raw, "seed", 0, 0),
        every_rounds=_whole(raw, "every_rounds", 1, 1),
        eval_slices=_whole(raw, "eval_slices", 1, 1),
        batch_size=_whole(raw, "batch_size", 8, 1),
        max_examples=_whole(raw, "max_examples", 0, 0),
        torch_threads=_whole(raw, "torch_threads", 0, 0),
        finetune=None if finetune is None else dict(finetune),
        fragments=_whole(raw, "fragments", 0, 0),
    )


def closed_round(state: RunState, round_index: int) -> int:
    """The last round whose θ the parameter server serves, from a WatchRun status (-1: none).

    NOTE: a round reads CLOSED while its update is computed; θ after it is served only once
    the next round opens (or the run finished), so an open run's last closed round is the one
    before its current round.
    """
    return round_index if state is RunState.FINISHED else round_index - 1


class Evaluator:
    """The eval job's loop over a bridge; ``model`` and ``task`` are built by :func:`_main`."""

    def __init__(
        self, config: EvalConfig, bridge: BridgeClient, model: Any, task: Any, log: EventLog, data: Any = None
    ) -> None:
        self.config = config
        self.data = data
        self.bridge = bridge
        self.model = model
        self.task = task
        self.log = log
        self.held_out: list[dict[str, Any]] = []
        self.evaluated = -1  # the last round reported

    async def load_held_out(self) -> None:
        """Take the scheduler's held-out slices once; every round is evaluated on the same ones."""
        from tendril_models.batches import load_slice

        examples = 0
        for _ in range(self.config.eval_slices):
            got = await self.bridge.next_slice()
            tensors = await asyncio.to_thread(load_slice, got.path)
            count = min((t.shape[0] for t in tensors.values()), default=0)
            if self.config.max_examples and examples + count > self.config.max_examples:
                keep = self.config.max_examples - examples
                tensors = {k: v[:keep] for k, v in tensors.items()}
                count = keep
            self.held_out.append(tensors)
            examples += count
            with contextlib.suppress(OSError):
                got.path.unlink()  # NOTE: held in memory; the work dir keeps no second copy
            if self.config.max_examples and examples >= self.config.max_examples:
                break
        self.log.info("held_out.loaded", slices=len(self.held_out), examples=examples)

    def _batches(self) -> Iterator[Mapping[str, Any]]:
        from tendril_models.evaluate import batches_of

        for tensors in self.held_out:
            yield from batches_of(tensors, self.config.batch_size)

    def _evaluate(self, params: Path) -> dict[str, float]:
        from tendril_models.evaluate import evaluate
        from tendril_models.export import load_theta

        load_theta(self.model, params)
        return evaluate(self.model, self._batches(), self.task, data=self.data)

    async def evaluate_latest(self) -> bool:
        """Fetch θ, evaluate it when its round is due; True when the scheduler said DONE."""
        path, theta_round = await self._fetch()
        round_index = theta_round - 1  # θ that starts round r is θ after round r - 1
        if round_index <= self.evaluated or round_index < 0 or not self.config.due(round_index):
            return False
        began = time.monotonic()
        metrics = await asyncio.to_thread(self._evaluate, path)
        metrics["eval_seconds"] = round(time.monotonic() - began, 4)
        self.evaluated = round_index
        self.log.info("round.evaluated", round=round_index, **metrics)
        reported = {k: v for k, v in metrics.items() if math.isfinite(v)}
        directive = await self.bridge.report_progress(ProgressKind.METRICS, round_index, metrics=reported)
        return directive.kind is DirectiveKind.DONE

    async def _fetch(self) -> tuple[Path, int]:
        """θ and the round it starts; with fragments (streaming sync) every fragment's run merged
        by name, at the lowest of their rounds (every fragment is at least there)."""
        if not self.config.fragments:
            fetched = await self.bridge.fetch_parameters(PARAMS)
            return fetched.path, fetched.round
        from tendril_diloco.params import load_params, save_params

        theta: dict[str, Any] = {}
        rounds = []
        for k in range(self.config.fragments):
            fetched = await self.bridge.fetch_parameters(f"params/current-f{k}.safetensors", fragment=k)
            theta.update(load_params(fetched.path))
            fetched.path.unlink(missing_ok=True)
            rounds.append(fetched.round)
        path = self.bridge.work_dir / PARAMS
        save_params(theta, path)
        return path, min(rounds)

    async def run(self) -> None:
        await self.load_held_out()
        last = self.config.rounds - 1
        # NOTE: with fragments, fragment 0's run: it is pushed at a round's sync point, the last of
        # the round's fragments, so its round closing means the round's θ is (about) complete.
        watch = (
            self.bridge.watch_run(f"{self.config.run_id}-f0", retry_policy=WATCH_RETRY)
            if self.config.fragments
            else self.bridge.watch_run(retry_policy=WATCH_RETRY)
        )
        async for status in watch:
            closed = closed_round(status.state, status.round)
            # NOTE: θ is pulled only when a round that is due closed since the last evaluation.
            wanted = any(self.config.due(r) for r in range(self.evaluated + 1, closed + 1))
            if wanted and await self.evaluate_latest():
                return
            if status.ended:
                break
        # NOTE: the watch ended (run finished or closed) before θ of the last round was seen.
        if self.evaluated < last and await self.evaluate_latest():
            return
        await self.bridge.report_progress(ProgressKind.FINISHED, max(self.evaluated, 0))


async def _build(config: EvalConfig, bridge: BridgeClient) -> tuple[Any, Any, Any]:
    """The run's model, task and data summary, built as the trainers build them (θ is replaced
    before every evaluation)."""
    import torch

    from tendril_models.build import build_model, remote_code_allowed
    from tendril_models.errors import ModelError
    from tendril_models.finetune import FinetuneSpec
    from tendril_models.source import fetch_checkpoint
    from tendril_models.spec import DataSpec, ModelSpec
    from tendril_models.tasks import get_task

    spec = ModelSpec.from_dict(config.model)
    data = DataSpec.from_dict(config.data)
    try:
        finetune = None if config.finetune is None else FinetuneSpec.from_dict(config.finetune)
    except ModelError as exc:
        raise _bad(exc.message) from exc
    task = get_task(spec.task)
    allow = remote_code_allowed()
    checkpoint = await fetch_checkpoint(bridge, spec, trust_remote_code=spec.trust_remote_code and allow)
    # NOTE: with a LoRA adapter the base stays as loaded and θ (the adapter) is replaced per round.
    model: Any = await asyncio.to_thread(
        build_model,
        spec,
        data,
        seed=config.seed,
        checkpoint_dir=checkpoint,
        allow_remote_code=allow,
        finetune=finetune,
    )
    # NOTE: a GPU only when the job's lease has one (JobService names it in CUDA_VISIBLE_DEVICES).
    if os.environ.get("CUDA_VISIBLE_DEVICES") and torch.cuda.is_available():
        model = model.to("cuda")
    return model, task, data


async def _main(args: argparse.Namespace, token: str, log: EventLog) -> None:
    job = await asyncio.to_thread(JobDescriptor.load, args.job_json) if args.job_json else None
    work = job.work_dir if job is not None else Path(os.environ.get("WORK_DIR") or Path(args.socket).parent)
    async with BridgeClient(args.socket, token, work_dir=work, job=job) as bridge:
        raw = (await bridge.get_job()).config if job is None else dict(job.config)
        config = parse_eval_config(raw)
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        log.info("job.start", run_id=config.run_id, rounds=config.rounds, every_rounds=config.every_rounds)
        model, task, data = await _build(config, bridge)
        await Evaluator(config, bridge, model, task, log, data).run()
        log.info("job.done")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tendril_diloco.evaluate", description="Tendril held-out evaluation (executor)"
    )
    parser.add_argument("--socket", default=os.environ.get("SOCKET_PATH", ""), help="the job bridge's Unix socket")
    parser.add_argument("--job-json", default=os.environ.get("JOB_JSON", ""), help="job.json (default: env JOB_JSON)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    log = configure("diloco-eval")
    tracing.setup("diloco-eval")
    return run("diloco-eval", args, log, _main)


if __name__ == "__main__":
    sys.exit(main())
