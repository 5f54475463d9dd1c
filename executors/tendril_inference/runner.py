"""One inference job: fetch the prompts, the tokenizer and the model through the bridge, generate
batch by batch while reporting progress, and write the results.

Bad input fails before the model is loaded where it can (the config, then the prompts file),
and before the first batch otherwise (a prompt too long for the model, chat formatting without
a chat_template). Each batch is reported (ReportProgress BATCH: prompts done, tokens,
tokens/s); a job dispatched without a scheduler has nobody to report to and says so once in its
log. A DONE directive from the scheduler stops the job after the batch it is in: its results are
written with ``complete: false`` in the summary. SIGTERM stops generation at the next token; the
lines already done stay as ``results/generations.partial.jsonl`` and no summary is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

from tendril_inference.config import InferenceConfig
from tendril_inference.errors import InferenceError, InferenceReason
from tendril_inference.generate import Generator, batch_seed, pick_device, pick_dtype, timed
from tendril_inference.prompts import Prompt, batches, read_prompts
from tendril_inference.results import ResultWriter
from tendril_models import DataSpec, get_task
from tendril_models.archive import is_archive
from tendril_models.build import build_model, remote_code_allowed, remote_code_trusted
from tendril_models.logs import EventLog
from tendril_models.source import fetch_checkpoint
from tendril_models.tokenizer import fetch_tokenizer, has_tokenizer, load_tokenizer
from tendril_sdk import BridgeClient, BridgeError, BridgeReason, DirectiveKind, ProgressKind

__all__ = ["Totals", "run_job"]

PROMPTS_DIR = "prompts"  # under artifacts/: the fetched prompts file


@dataclasses.dataclass
class Totals:
    """What the job generated so far."""

    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # in generate

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


async def fetch_prompts(bridge: BridgeClient, config: InferenceConfig) -> Path:
    """The prompts file, fetched into ``artifacts/prompts/``."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(config.prompts).path)).name or "prompts.jsonl"
    try:
        fetched = await bridge.fetch_resource(
            config.prompts, dest=f"{PROMPTS_DIR}/{name}", sha256=config.prompts_sha256
        )
    except BridgeError as exc:
        raise InferenceError(
            f"prompts {config.prompts} cannot be fetched ({exc.code.name}): {exc.message}",
            reason=InferenceReason.PROMPTS_UNAVAILABLE,
        ) from exc
    return fetched.path


def _data_spec(config: InferenceConfig, tokenizer: Any) -> DataSpec:
    """What build_model needs of the data: the task's inputs; for a model built from a config, the tokenizer's sizes."""
    task = get_task(config.model.task)
    tensors = {name: {"dtype": "int64", "shape": [0]} for name in task.inputs}
    if config.model.source:
        return DataSpec.from_dict({"task": task.name, "tensors": tensors})
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    return DataSpec.from_dict(
        {
            "task": task.name,
            "tensors": tensors,
            "vocab_size": len(tokenizer),
            "eot_id": eos if isinstance(eos, int) else -1,
            "pad_id": pad if isinstance(pad, int) else (eos if isinstance(eos, int) else -1),
        }
    )


async def _tokenizer_folder(bridge: BridgeClient, config: InferenceConfig, checkpoint: Path | None) -> Path:
    if config.tokenizer:
        return await fetch_tokenizer(bridge, config.tokenizer, sha256=config.tokenizer_sha256)
    source = config.model.source
    if checkpoint is not None and (is_archive(source) or has_tokenizer(checkpoint)):
        return checkpoint  # NOTE: an archive carries the tokenizer files beside the weights
    return await fetch_tokenizer(bridge, source)


class Reporter:
    """BATCH reports to the scheduler through the bridge, quiet once the job turns out to have none."""

    def __init__(self, bridge: BridgeClient, log: EventLog) -> None:
        self.bridge = bridge
        self.log = log
        self.enabled = True

    async def report(self, kind: ProgressKind, **kwargs: Any) -> DirectiveKind:
        if not self.enabled:
            return DirectiveKind.CONTINUE
        try:
            directive = await self.bridge.report_progress(kind, 0, **kwargs)
        except BridgeError as exc:
            if exc.reason != BridgeReason.NO_SCHEDULER:
                raise
            self.enabled = False
            self.log.info("progress.unreported", why="the job was dispatched without a scheduler")
            return DirectiveKind.CONTINUE
        return directive.kind


def _record(prompt: Prompt, ids: list[int], text: str, tokens: int, seconds: float) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": prompt.id,
        "prompt": prompt.prompt,
        "completion": text,
        "prompt_tokens": len(ids),
        "completion_tokens": tokens,
        "seconds": round(seconds, 6),
    }
    if prompt.meta is not None:
        record["meta"] = prompt.meta
    return record


async def run_job(
    config: InferenceConfig, bridge: BridgeClient, log: EventLog, *, stop: threading.Event | None = None
) -> Totals:
    """Run the job to its end (or to DONE); the totals written to the summary."""
    import torch

    stop = stop or threading.Event()
    began = time.perf_counter()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    prompts_path = await fetch_prompts(bridge, config)
    prompts = await asyncio.to_thread(read_prompts, prompts_path, config.sampling, chat=config.chat)
    log.info("prompts.read", prompts=len(prompts))

    allowed = remote_code_allowed()
    trust = remote_code_trusted(config.model, allowed)
    device = pick_device()
    dtype = pick_dtype(config.dtype, device)
    # NOTE: the checkpoint first (None: a model built from its config), so that an archive's own
    # tokenizer files can be used.
    checkpoint = await fetch_checkpoint(bridge, config.model, trust_remote_code=trust)
    tokenizer_dir = await _tokenizer_folder(bridge, config, checkpoint)
    tokenizer = await asyncio.to_thread(
        load_tokenizer, tokenizer_dir, trust_remote_code=trust, where=config.tokenizer or config.model.source
    )
    model: Any = await asyncio.to_thread(
        build_model,
        config.model,
        _data_spec(config, tokenizer),
        seed=config.seed,
        checkpoint_dir=checkpoint,
        allow_remote_code=allowed,
    )
    model = model.to(device=device, dtype=dtype).eval()
    generator = Generator(model, tokenizer, device=device, stop=stop)
    encoded = [generator.encode(p, chat=config.chat, system=config.system) for p in prompts]
    for prompt, ids in zip(prompts, encoded, strict=True):
        generator.check_fits(prompt, ids, f"{prompts_path.name} line {prompt.line}")
    ids_of = {p.line: ids for p, ids in zip(prompts, encoded, strict=True)}
    log.info("model.ready", device=device, dtype=str(dtype).removeprefix("torch."), seconds=time.perf_counter() - began)

    totals, complete = Totals(), True
    reporter = Reporter(bridge, log)
    with ResultWriter(bridge.work_dir) as writer:
        try:
            for index, batch in enumerate(batches(prompts, config.batch_size)):
                rows = [ids_of[p.line] for p in batch]
                done, seconds = await asyncio.to_thread(
                    timed, generator.run, rows, batch[0].sampling, seed=batch_seed(config.seed, index)
                )
                if done is None:
                    raise asyncio.CancelledError
                for prompt, ids, completion in zip(batch, rows, done, strict=True):
                    writer.write(_record(prompt, ids, completion.text, completion.tokens, seconds))
                    totals.prompt_tokens += len(ids)
                    totals.completion_tokens += completion.tokens
                totals.prompts += len(batch)
                totals.seconds += seconds
                batch_tokens = sum(c.tokens for c in done)
                log.info("batch.done", batch=index, prompts=len(batch), tokens=batch_tokens, seconds=seconds)
                directive = await reporter.report(
                    ProgressKind.BATCH,
                    batch_size=len(batch),
                    batch_seconds=seconds,
                    metrics={
                        "prompts_done": totals.prompts,
                        "prompts": len(prompts),
                        "completion_tokens": totals.completion_tokens,
                        "tokens_per_second": batch_tokens / seconds if seconds > 0 else 0.0,
                    },
                )
                if directive == DirectiveKind.DONE and totals.prompts < len(prompts):
                    log.info("job.done_early", prompts_done=totals.prompts, prompts=len(prompts))
                    complete = False
                    break
        except asyncio.CancelledError:
            stop.set()
            partial = writer.abandon()
            log.info("results.partial", lines=writer.lines, path=str(partial) if partial else "")
            raise
        summary = {
            "complete": complete,
            "prompts": len(prompts),
            "prompts_done": totals.prompts,
            "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens,
            "generate_seconds": round(totals.seconds, 6),
            "tokens_per_second": round(totals.tokens_per_second, 3),
            "seconds": round(time.perf_counter() - began, 6),
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "dtype": str(dtype).removeprefix("torch."),
            "model": config.model.source or f"config:{config.model.model_config.get('model_type', '')}",
            "task": config.model.task,
            "batch_size": config.batch_size,
            "seed": config.seed,
        }
        path = writer.commit(summary)
    log.info("results.written", path=str(path), **{k: v for k, v in summary.items() if k != "model"})
    await reporter.report(
        ProgressKind.FINISHED,
        metrics={"prompts_done": totals.prompts, "completion_tokens": totals.completion_tokens},
    )
    return totals
