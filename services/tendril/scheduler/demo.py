"""``make demo``: a whole DiLoCo run on this machine, from nothing to a trained model.

``python -m tendril.scheduler.demo [--out demo-out] [--model gpt2|llama]`` writes a JSONL
corpus from the ``.py`` sources of this Python's standard library (OUT/corpus/stdlib.jsonl),
prepares it with a byte-level BPE tokenizer trained on it (OUT/data, with a held-out split
and the tokenizer as an asset), starts a gateway, a data node, three
supervised workers (each with its own ports, state and work dir; worker-0 uses the
``flexible`` strategy so it can host the parameter server beside its training job) and the
reference scheduler, trains a small GPT-2 (or Llama) for several DiLoCo rounds on the CPU,
stops everything and leaves ``metrics.jsonl``, ``loss.png`` and the model in OUT.
Logs of every process are in OUT/run/logs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tendril.core import codecs
from tendril.core.codecs import CODECS
from tendril.core.errors import TendrilError
from tendril.core.ports import free_address
from tendril.scheduler.cluster import LocalCluster, WorkerSpec, pick_offsets, worker_ports
from tendril.scheduler.metrics import read_metrics, run_stats
from tendril.scheduler.plot import plot_loss
from tendril.scheduler.report import summary_table
from tendril.scheduler.state import STATE_FILES

START_TIMEOUT_SECONDS = 120.0
# [training.model.config] of the demo's architectures; vocab_size and the position limit come
# from the data set.
MODELS: dict[str, dict[str, Any]] = {
    "gpt2": {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64},
    "llama": {
        "model_type": "llama",
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
    },
}
TOKENIZERS = ("bpe", "bytes")
# The last held-out loss ≤ 0.8 × ln(vocabulary), the loss of a uniform guess (without held-out
# losses: the last round's mean training loss ≤ 0.8 × the first round's).
LOSS_TARGET = 0.8


# A codec whose worker accumulator stands in for outer momentum (sparse, as SparseLoCo): outer
# SGD without momentum, at outer lr 1 (the averaged sparse updates are applied as they are).
OUTER_SPARSE = "outer_momentum = 0.0\nouter_lr = 1.0"
# --error-feedback -> job.toml's training.error_feedback
FEEDBACK_TOML = {"auto": '"auto"', "on": "true", "off": "false"}


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo trains; the defaults fit ≤ 10 minutes on 2 CPU cores."""

    out: Path
    workers: int = 3  # training workers
    spares: int = 0  # extra workers that may replace a lost one
    flexible_workers: int = 1  # worker-0 .. worker-(n-1) offer what is asked; the others their whole machine
    rounds: int = 20
    inner_steps: int = 50
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 2e-3
    max_bytes: int = 8_000_000  # of the stdlib corpus
    sequences_per_slice: int = 256
    model: str = "gpt2"  # a key of MODELS
    tokenizer: str = "bpe"  # "bpe": trained on the corpus at prepare; "bytes": the byte tokenizer
    vocab_size: int = 2048  # of the BPE
    eval_fraction: float = 0.02
    run_id: str = "demo"
    codec: str = "fp32"
    error_feedback: str = "auto"  # "auto" (on for int4), "on" or "off"
    keep_updates: bool = False
    sync: str = "blocking"  # training.sync
    outer_momentum: float | None = None  # training.outer_momentum; None: the job's default for its sync
    worker_extra: tuple[tuple[str, Any], ...] = ()
    round_timeout_seconds: float = 30.0
    timeout_seconds: float = 900.0
    # Several gateways over one Redis (redis_url; gateways > 1 needs it): every peer gets them
    # all, first one first, and moves to the next when the one it uses dies.
    gateways: int = 1
    redis_url: str = ""


def stdlib_sources() -> list[Path]:
    """This interpreter's standard library .py files (no site-packages, no tests' data), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    return sorted(
        (p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts) and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def demo_corpus(settings: DemoSettings) -> Path:
    """OUT/corpus/stdlib.jsonl: the stdlib's .py sources as JSON lines ``{"text": ...}``, one per
    top-level block (split at blank-line pairs), at most ``max_bytes`` of text in all."""
    path = settings.out / "corpus" / "stdlib.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    left = settings.max_bytes
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for file in stdlib_sources():
            if left <= 0:
                break
            text = file.read_bytes()[:left].decode("utf-8", errors="replace")
            left -= len(text.encode("utf-8"))
            for block in text.split("\n\n\n"):
                if block.strip():
                    out.write(json.dumps({"text": block + "\n"}) + "\n")
    tmp.replace(path)
    return path


def prepare_args(settings: DemoSettings, corpus: Path, folder: Path) -> list[str]:
    """The `tendril data prepare` arguments of the demo's data set."""
    args = [str(corpus), str(folder), "--seq-len", str(settings.seq_len)]
    args += ["--sequences-per-slice", str(settings.sequences_per_slice), "--eval-fraction", str(settings.eval_fraction)]
    if settings.tokenizer == "bpe":
        args += ["--train-tokenizer", "bpe", "--vocab-size", str(settings.vocab_size)]
    return [*args, "--force"]


def prepare_data(settings: DemoSettings) -> Path:
    """The data set in OUT/data (kept between demos with the same settings: preparing it again
    gives the same bytes)."""
    folder = settings.out / "data"
    stamp = settings.out / "data.args.json"
    wanted = {"max_bytes": settings.max_bytes, "args": prepare_args(settings, Path("corpus"), Path("data"))}
    if (folder / "manifest.json").exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return folder
    corpus = demo_corpus(settings)
    subprocess.run(
        [sys.executable, "-m", "tendril.data_node", "prepare", *prepare_args(settings, corpus, folder)], check=True
    )
    stamp.write_text(json.dumps(wanted))
    return folder


def model_table(settings: DemoSettings) -> str:
    """job.toml's [training.model] for ``settings.model``."""
    lines = ["[training.model]", 'task = "causal-lm"', "", "[training.model.config]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in MODELS[settings.model].items()]
    return "\n".join(lines) + "\n"


def job_toml(settings: DemoSettings, *, listen: str, gateway: str, data_node: str) -> str:
    """The scheduler's job.toml for the demo run."""
    return f"""
[scheduler]
id = "{settings.run_id}-scheduler"
listen = "{listen}"
gateway = "{gateway}"
out_dir = "{settings.out}"

[allocation]
workers = {settings.workers}
bid = 150.0
republish_seconds = 2.0
timeout_seconds = {START_TIMEOUT_SECONDS}

[allocation.worker]
cpu = 1.0
memory_gib = 1.0
storage_gib = 1.0

[allocation.parameter_server]
cpu = 0.5
memory_gib = 0.5
storage_gib = 1.0

[data]
node = "{data_node}"

[training]
run_id = "{settings.run_id}"
rounds = {settings.rounds}
inner_steps = {settings.inner_steps}
codec = "{settings.codec}"
round_timeout_seconds = {settings.round_timeout_seconds}
quorum = 1
torch_threads = 1
keep_updates = {"true" if settings.keep_updates else "false"}
sync = "{settings.sync}"
error_feedback = {FEEDBACK_TOML[settings.error_feedback]}
{outer_toml(settings)}

[training.inner]
lr = {settings.lr}
warmup_steps = 10
batch_size = {settings.batch_size}

{model_table(settings)}"""


def outer_toml(settings: DemoSettings) -> str:
    """The [training] lines of the outer optimizer: the sparse codec's own, else the momentum asked for."""
    if codecs.get(settings.codec).replaces_momentum:
        return OUTER_SPARSE
    if settings.outer_momentum is not None:
        return f"outer_momentum = {settings.outer_momentum!r}"
    return ""


@dataclasses.dataclass
class DemoResult:
    lines: list[dict[str, Any]]
    scheduler_exit: int
    killed: list[str]
    seconds: float
    cluster_root: Path


async def run_cluster(
    settings: DemoSettings, during: Callable[[LocalCluster], Coroutine[Any, Any, None]] | None = None
) -> DemoResult:
    """Start the network, run the scheduler to its end, stop everything.

    ``during`` (tests) runs beside the scheduler, e.g. to kill a worker mid-run; what it raises
    is raised once everything is stopped.
    """
    began = time.monotonic()
    data = prepare_data(settings)
    root = settings.out / "run"
    shutil.rmtree(root, ignore_errors=True)  # leases and jobs of an earlier demo must not come back
    # (the run state too: the demo trains its run anew, it does not resume the last one)
    for name in ("metrics.jsonl", "model.safetensors", "loss.png", *STATE_FILES):
        (settings.out / name).unlink(missing_ok=True)
    shutil.rmtree(settings.out / "model", ignore_errors=True)  # the exported model of an earlier demo
    cluster = LocalCluster(root)
    killed: list[str] = []
    code = -1
    try:
        if settings.gateways > 1 and not settings.redis_url:
            raise ValueError("several gateways need a redis_url: they share the network's state there")
        addresses: list[str] = []
        while len(addresses) < settings.gateways:
            address = free_address()
            if address not in addresses:
                addresses.append(address)
        for i, address in enumerate(addresses):
            name = "gateway" if settings.gateways == 1 else f"gateway-{i}"
            started = cluster.start_gateway(address, name=name, redis_url=settings.redis_url)
            await cluster.wait_serving(started, [address], START_TIMEOUT_SECONDS)
        gateway = ",".join(addresses)
        data_node = free_address()
        node = cluster.start_data_node(data, data_node, gateway)
        await cluster.wait_serving(node, [data_node], START_TIMEOUT_SECONDS)
        specs = [
            WorkerSpec(
                f"worker-{i}",
                offset,
                "flexible" if i < settings.flexible_workers else "whole",
                extra=settings.worker_extra,
            )
            for i, offset in enumerate(pick_offsets(settings.workers + settings.spares))
        ]
        procs = [cluster.start_worker(spec, gateway) for spec in specs]
        for spec, proc in zip(specs, procs, strict=True):
            await cluster.wait_serving(proc, worker_ports(spec.port_offset)[:5], START_TIMEOUT_SECONDS)
        print(f"demo: gateway {gateway}, data node {data_node}, {len(specs)} workers serving; training starts")
        job = root / "job.toml"
        job.write_text(job_toml(settings, listen=free_address(), gateway=gateway, data_node=data_node))
        scheduler = cluster.start_scheduler(job)
        side: asyncio.Task[None] | None = asyncio.create_task(during(cluster)) if during is not None else None
        side_error: BaseException | None = None
        try:
            code = await _wait_exit(scheduler.popen, settings.timeout_seconds)
        finally:
            if side is not None:
                side.cancel()
                try:
                    await side
                except asyncio.CancelledError:
                    pass
                except Exception as exc:
                    side_error = exc
        if side_error is not None:
            raise side_error
        if code != 0:
            print(f"demo: the scheduler exited with {code}; its log ends:\n{scheduler.tail(30)}", file=sys.stderr)
    finally:
        killed = cluster.stop()
    metrics = settings.out / "metrics.jsonl"
    lines = read_metrics(metrics) if metrics.exists() else []
    return DemoResult(lines, code, killed, time.monotonic() - began, root)


def loss_ratio(lines: list[dict[str, Any]], vocab_size: int) -> tuple[float, str]:
    """What the demo checks against LOSS_TARGET, and in words.

    NOTE: the held-out loss is measured on the same examples every round, so it moves smoothly;
    a round's training loss depends on which slices it drew (modules of very different
    difficulty) and can jump by a third from one round to the next.
    """
    held_out = [line["eval_loss"] for line in lines if "eval_loss" in line]
    if held_out and vocab_size > 1:
        uniform = math.log(vocab_size)
        return held_out[-1] / uniform, f"held-out loss {held_out[-1]:.3f} vs {uniform:.3f} for a uniform guess"
    first, last = lines[0]["loss_mean"], lines[-1]["loss_mean"]
    return last / first, f"mean training loss {first:.3f} -> {last:.3f}"


def timing_line(lines: list[dict[str, Any]]) -> str:
    """The run's timing figures in one line (definitions: tendril.scheduler.metrics.run_stats)."""
    stats = run_stats(lines)
    return (
        f"demo: waiting for the slowest worker {100 * stats['sync_wait_fraction']:.1f} % of a round (median; "
        f"round {stats['round_seconds']:.2f} s); compute utilization {100 * stats['compute_utilization']:.1f} % "
        f"(waiting {100 * stats['waiting_share']:.1f} %, sync {100 * stats['sync_share']:.1f} %, "
        f"between batches and around the sync {100 * stats['other_share']:.1f} %); data stall "
        f"{100 * stats['stall_fraction']:.2f} %; load average {stats['load_average']:.2f} (median at round ends)"
    )


async def _wait_exit(popen: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while popen.poll() is None:
        if time.monotonic() > deadline:
            return -1
        await asyncio.sleep(0.5)
    return int(popen.returncode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tendril.scheduler.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    parser.add_argument("--rounds", type=int, default=DemoSettings.rounds, help="DiLoCo rounds")
    parser.add_argument("--inner-steps", type=int, default=DemoSettings.inner_steps, help="H: batches per round")
    parser.add_argument("--workers", type=int, default=DemoSettings.workers, help="training workers")
    parser.add_argument("--codec", default=DemoSettings.codec, choices=CODECS)
    parser.add_argument(
        "--error-feedback",
        default=DemoSettings.error_feedback,
        choices=sorted(FEEDBACK_TOML),
        help="workers add what the codec dropped from Δ to the next Δ (auto: on for int4)",
    )
    parser.add_argument("--model", default=DemoSettings.model, choices=sorted(MODELS), help="architecture (gpt2)")
    parser.add_argument(
        "--tokenizer", default=DemoSettings.tokenizer, choices=TOKENIZERS, help="bpe (trained at prepare) or bytes"
    )
    parser.add_argument(
        "--sync",
        default=DemoSettings.sync,
        choices=("blocking", "overlapped", "streaming"),
        help="training.sync (blocking)",
    )
    args = parser.parse_args(argv)
    settings = DemoSettings(
        out=args.out.resolve(),
        rounds=args.rounds,
        inner_steps=args.inner_steps,
        workers=args.workers,
        codec=args.codec,
        error_feedback=args.error_feedback,
        model=args.model,
        tokenizer=args.tokenizer,
        sync=args.sync,
    )
    settings.out.mkdir(parents=True, exist_ok=True)

    async def guarded() -> DemoResult:
        # NOTE: Ctrl-C and SIGTERM cancel the run, so that the cluster is stopped on the way out.
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        return await run_cluster(settings)

    try:
        result = asyncio.run(guarded())
    except TendrilError as exc:
        print(f"demo: {exc.message}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("demo: interrupted; every process was stopped", file=sys.stderr)
        return 130
    if result.killed:
        print(f"demo: had to SIGKILL {', '.join(result.killed)}", file=sys.stderr)
    if result.scheduler_exit != 0 or not result.lines:
        print(f"demo: training failed; logs in {result.cluster_root / 'logs'}", file=sys.stderr)
        return 1
    plot_loss(
        result.lines, settings.out / "loss.png", title=f"DiLoCo, {settings.model}, {settings.workers} workers, CPU"
    )
    print(summary_table(result.lines))
    first, last = result.lines[0]["loss_mean"], result.lines[-1]["loss_mean"]
    manifest = json.loads((settings.out / "data" / "manifest.json").read_text())
    ratio, checked = loss_ratio(result.lines, int(manifest.get("vocab_size", 0)))
    held_out = [line["eval_loss"] for line in result.lines if "eval_loss" in line]
    evaluated = f"; held-out loss {held_out[0]:.3f} -> {held_out[-1]:.3f}" if held_out else ""
    model = settings.out / "model" if (settings.out / "model").is_dir() else settings.out / "model.safetensors"
    print(
        f"demo: {len(result.lines)} rounds in {result.seconds:.0f} s; mean loss {first:.3f} -> {last:.3f}"
        f"{evaluated}; wrote {settings.out / 'metrics.jsonl'}, {settings.out / 'loss.png'}, {model}"
    )
    print(timing_line(result.lines))
    if ratio > LOSS_TARGET:
        failed = f"demo: the loss fell less than expected: {checked} (x{ratio:.2f}, target x{LOSS_TARGET})"
        print(failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
