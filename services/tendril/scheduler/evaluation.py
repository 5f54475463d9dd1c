"""Held-out evaluation of a run (no grpc): the eval job's slices, its results per round, and
what the run says when it goes on without one.

One eval job per run (class ``eval``, name ``diloco``) follows the run's rounds at the
parameter server and reports, after every ``[evaluation] every_rounds``-th round and always the
last, ``eval_loss`` and ``eval_perplexity`` (language models) / ``eval_accuracy``
(classification) of that round's θ on the data set's held-out split (``eval_slices``), which no
training job is ever assigned. The results join the round's metrics.jsonl line — whichever of
the round's close and its evaluation comes first. Losing the eval job never fails the run: it
is replaced like a trainer, and after ``[evaluation] max_lost`` losses the run goes on without
held-out evaluation and says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.scheduler.errors import SchedulerError, SchedulerReason
from tendril.scheduler.jobconfig import JobConfig
from tendril.scheduler.slices import Assignment, SliceRef

log = get_logger("tendril.scheduler.evaluation")

EVAL = ("eval", "diloco")
EVAL_KEYS = ("eval_loss", "eval_perplexity", "eval_accuracy", "eval_examples", "eval_seconds")
NO_SPLIT = "no held-out split in the data set; evaluation off"


@dataclasses.dataclass(frozen=True)
class AssetRef:
    """A file the data set carries beside its slices (the tokenizer or image processor, as a tar)."""

    name: str
    size_bytes: int
    sha256: str
    kind: str


def held_out_slices(manifest: Any) -> tuple[SliceRef, ...]:
    """The ``eval_slices`` of a GetManifest answer (none when the data set or the node has no split)."""
    return tuple(
        SliceRef(s.name, s.size_bytes, s.sha256, s.num_sequences) for s in getattr(manifest, "eval_slices", ())
    )


def dataset_assets(manifest: Any) -> tuple[AssetRef, ...]:
    """The ``assets`` of a GetManifest answer."""
    return tuple(
        AssetRef(a.name, a.size_bytes, a.sha256, getattr(a, "kind", "")) for a in getattr(manifest, "assets", ())
    )


def due(round_index: int, every: int, rounds: int) -> bool:
    """Whether θ after ``round_index`` is evaluated (every ``every``-th round and the last)."""
    return round_index == rounds - 1 or (round_index + 1) % every == 0


def data_summary(train: Mapping[str, Any], dataset: Any) -> dict[str, Any]:
    """The DataSpec dict of a training config; for a config that carries none, the one of a
    format-1 manifest (a causal-lm data set of ``input_ids``, its last id the end of text)."""
    data = train.get("data")
    if isinstance(data, Mapping) and data:
        return dict(data)
    return {
        "task": "causal-lm",
        "tensors": {"input_ids": {"dtype": "int32", "shape": [dataset.seq_len]}},
        "vocab_size": dataset.vocab_size,
        "seq_len": dataset.seq_len,
        "eot_id": dataset.vocab_size - 1,
    }


def export_due(round_index: int, every: int, rounds: int) -> bool:
    """Whether the model is exported after ``round_index`` during the run (every ``every``-th
    round, 0: never); the end of the run exports the last round's model anyway."""
    return every > 0 and (round_index + 1) % every == 0 and round_index + 1 < rounds


def eval_config(config: JobConfig, train: Mapping[str, Any], dataset: Any) -> dict[str, Any]:
    """Config of the eval job (docs/ARCHITECTURE.md "Eval job config"): the trainers' run,
    parameter server, model spec, data summary, seed and LoRA adapter, and what to evaluate when."""
    e = config.evaluation
    out: dict[str, Any] = {
        "run_id": train["run_id"],
        "parameter_server": train["parameter_server"],
        **({"fragments": train["fragments"]} if "fragments" in train else {}),
        "model": model_spec(train["model"]),
        "data": data_summary(train, dataset),
        "data_node": train.get("data_node", getattr(dataset, "data_node_address", "")),
        "seed": train.get("seed", config.training.seed),
        "rounds": config.training.rounds,
        "every_rounds": e.every_rounds,
        "export_every_rounds": e.export_every_rounds,
        "eval_slices": len(dataset.eval_slices),
        "batch_size": e.batch_size,
        "max_examples": e.max_examples,
        "torch_threads": config.training.torch_threads,
    }
    if "finetune" in train:
        out["finetune"] = dict(train["finetune"])
    return out


def model_spec(model: Mapping[str, Any]) -> dict[str, Any]:
    """A ModelSpec dict; a bare GPT-2 kwargs object (the old training config form) becomes one."""
    if "task" in model or "source" in model or "config" in model:
        return dict(model)
    return {"task": "causal-lm", "config": {"model_type": "gpt2", **model}}


class Evaluation:
    """The run's held-out evaluation: who evaluates, on which slices, what came back."""

    def __init__(
        self,
        config: JobConfig,
        run_id: str,
        *,
        on_result: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.rounds = config.training.rounds
        self.enabled = config.evaluation.enabled
        self.off_reason = "" if self.enabled else "evaluation.enabled is false"
        self.slices: tuple[SliceRef, ...] = ()
        self.job_id = ""  # the live eval job
        self.results: dict[int, dict[str, float]] = {}
        self.lost = 0
        self.placed = 0  # eval jobs dispatched
        self.finished = False  # the eval job was told DONE, or ended after the last round
        self._next = 0
        self._epoch = 0
        self.on_result = on_result or (lambda _round, _fields: None)

    # -- setup -----------------------------------------------------------------------------

    def set_slices(self, slices: Iterable[SliceRef]) -> None:
        self.slices = tuple(slices)
        if self.enabled and not self.slices:
            self.turn_off(NO_SPLIT)

    def turn_off(self, why: str) -> None:
        if self.off_reason:
            return
        self.off_reason = why
        log.warning("evaluation.off", run_id=self.run_id, reason=why)

    @property
    def active(self) -> bool:
        return self.enabled and not self.off_reason

    def needs(self, live: int) -> int:
        """Eval leases still missing (0 or 1)."""
        return 1 if self.active and not self.finished and live == 0 and self.slices else 0

    # -- the eval job ----------------------------------------------------------------------

    def start(self, job_id: str) -> None:
        """An eval job was dispatched."""
        self.job_id = job_id
        self.placed += 1
        self._next = 0

    def owns(self, job_id: str) -> bool:
        return bool(job_id) and job_id == self.job_id

    def job_ended(self, job_id: str) -> None:
        """The eval job's process ended (whatever the state): nothing more will come from it."""
        if job_id == self.job_id:
            self.job_id = ""

    def lose(self, job_id: str, reason: str) -> None:
        """The eval job (or its lease) is gone: a new one is solicited, up to max_lost."""
        if job_id == self.job_id:
            self.job_id = ""
        if self.finished:
            return
        self.lost += 1
        limit = self.config.evaluation.max_lost
        if self.lost > limit:
            self.turn_off(f"{self.lost} eval jobs were lost (evaluation.max_lost = {limit}); the last: {reason}")
        else:
            log.warning("evaluation.job_lost", run_id=self.run_id, lost=self.lost, reason=reason)

    def assign(self, job_id: str) -> Assignment:
        """The next held-out slice, cycling: the eval job reads the whole split each pass."""
        if not self.owns(job_id) or not self.slices:
            raise SchedulerError(
                ErrorKind.NOT_FOUND,
                f"job {job_id!r} is not the live eval job of run {self.run_id}",
                reason=SchedulerReason.UNKNOWN_JOB,
                metadata={"job_id": job_id},
            )
        index = self._next % len(self.slices)
        epoch = self._next // len(self.slices)
        self._next += 1
        return Assignment(self.slices[index], epoch, None)

    def report(self, round_index: int, metrics: Mapping[str, float], *, finished: bool = False) -> bool:
        """A METRICS (or FINISHED) report of the eval job; True when it is done."""
        if finished:  # the job says it has nothing more to evaluate (the run it watched is over)
            self.finished = True
            return True
        fields = {k: float(v) for k, v in metrics.items() if k in EVAL_KEYS and math.isfinite(v)}
        if "eval_loss" in fields and 0 <= round_index < self.rounds:
            fields["eval_examples"] = int(fields.get("eval_examples", 0))  # type: ignore[assignment]
            self.results[round_index] = fields
            log.info("round.evaluated", round=round_index, **fields)
            self.on_result(round_index, fields)
        if round_index >= self.rounds - 1:
            self.finished = True
        return self.finished

    @property
    def last_done(self) -> bool:
        return (self.rounds - 1) in self.results

    def missing_reason(self, timeout: float) -> str:
        """Why the run ends without the last round's evaluation ("" when it has it or is off)."""
        if not self.active or self.last_done:
            return ""
        if self.waiting():
            return f"the last round's evaluation did not come within evaluation.timeout_seconds ({timeout:.0f} s)"
        if not self.placed:
            return (
                "no worker took the eval job (executor eval/diloco with the resources of [allocation.eval]; "
                "a worker with arbiter.strategy = 'flexible' can host it beside another lease)"
            )
        return "the eval job ended before it evaluated the last round; see its log"

    def fields(self, round_index: int) -> dict[str, float]:
        """The eval figures of a round (empty until its evaluation came in)."""
        return dict(self.results.get(round_index, {}))

    def waiting(self) -> bool:
        """Whether the end of the run should wait for the last round's evaluation."""
        # NOTE: only while an eval job is placed: a run that never got one does not wait for it.
        return self.active and bool(self.job_id) and not self.last_done and not self.finished


class MetricsUpdater:
    """Adds eval figures to metrics.jsonl lines: into a line not yet written, or by rewriting
    the file (atomically: a reader sees the old file or the new one) for a line already there."""

    def __init__(self, path: Path, evaluation: Evaluation, lines: list[dict[str, Any]]) -> None:
        self.path = path
        self.evaluation = evaluation
        self.lines = lines  # the run's completed rounds, the same dicts metrics.jsonl was written from

    def decorate(self, line: dict[str, Any]) -> dict[str, Any]:
        line.update(self.evaluation.fields(line["round"]))
        return line

    def result(self, round_index: int, fields: Mapping[str, float]) -> None:
        written = [line for line in self.lines if line.get("round") == round_index]
        if not written:
            return  # the round's line takes them when it is written
        for line in written:
            line.update(fields)
        rewrite_round(self.path, round_index, fields)


def rewrite_round(path: Path, round_index: int, fields: Mapping[str, Any]) -> None:
    """Merge ``fields`` into the metrics.jsonl line of ``round_index``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    out = []
    for raw in text.splitlines():
        if raw.strip():
            line = json.loads(raw)
            if line.get("round") == round_index:
                line.update(fields)
            raw = json.dumps(line)
        out.append(raw)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{raw}\n" for raw in out))
    os.replace(tmp, path)
