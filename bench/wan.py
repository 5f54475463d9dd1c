"""The WAN figures: DiLoCo in the lab, by sync mode, codec and link rate, beside data-parallel training.

``python -m bench --only wan`` (not in the default run: it builds one lab per configuration and
trains in each; see docs/WAN.md "Measured" for its length). For each rate, mode and codec a lab
of ``workers`` worker hosts (+ gateway, data node, scheduler; every link tbf-shaped to the rate,
mTLS) trains the demo's model (:func:`tendril.lab.train.train`) for ``rounds`` rounds of
``inner_steps`` batches and the section reads the run's metrics.jsonl: compute utilization (a
fraction: Σ step time / Σ round time), the held-out loss after the last round and the bytes
each worker pushed in the run. Beside them, per rate, the data-parallel baseline
(``bench/wan_dp.py``): one process per worker host, torch.distributed over gloo with the ranks
connecting over the lab's addresses, all_reduce of the gradients every step, the same model,
data set, batch size, inner optimiser and number of steps (rounds × inner_steps per worker).

The modes are a parameter (``modes``) and go to job.toml's ``training.sync`` as named, so a new
mode is measured by naming it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Figure

DEFAULT_MODES = ("blocking", "overlapped", "streaming")
DEFAULT_CODECS = ("fp32", "int8", "int4")
DEFAULT_RATES = (100.0, 1000.0)
DEFAULT_SPARSE_MODES = ("blocking",)  # the sparse codec is measured in these modes
DEFAULT_WORKERS = 3
DEFAULT_ROUNDS = 10
# NOTE: sized by measurement (docs/WAN.md "Sizing the model"): a GPT-2 192 wide and 4 deep
# (Δ 8.8 MB in fp32), 10 steps a round of 6 sequences of 128 tokens: a blocking fp32 round at
# 100 Mbit/s computed 2.82 s and synced 2.36 s per worker (the issue's "one round's compute ≈ one
# round's fp32 sync at 100 Mbit/s"). With 2 sequences a step it computed 0.69 s against 2.35 s,
# and the fixed cost around each step and round (reports, handing the step to its thread,
# applying the update) weighed three times as much. 10 steps a round put the sparse codec's
# bytes past 1,000x fewer than data-parallel's, which grow with the steps while DiLoCo's grow
# with the rounds; the width sets how long a step is beside the fixed cost between two steps.
DEFAULT_WIDTH = 192
DEFAULT_LAYERS = 4
DEFAULT_INNER_STEPS = 10
DEFAULT_BATCH_SIZE = 6
# NOTE: every dense run takes its outer step with momentum 0.5 (the delayed modes' default), not
# blocking sync's 0.9: over 10 rounds 0.9 overshoots. Blocking fp32 at 1 Gbit/s with this grid
# ended at a held-out loss of 6.259 with 0.9 (6.452 after round 0, 6.800 after round 1), 5.514
# with 0.5, 5.240 with plain averaging (outer lr 1, no momentum, as the sparse codec runs); one
# momentum for every mode keeps the modes comparable. docs/WAN.md, "Outer momentum of a delayed step".
DEFAULT_OUTER_MOMENTUM = 0.5
# NOTE: a slice is a stretch of the corpus in its order (a few top-level blocks of one stdlib
# module), so a worker trains on whatever slices it holds. With 64 sequences a slice each worker
# spent a whole round on one stretch, and identical runs ended 10 rounds up to 1.0 apart in
# held-out loss (blocking fp32 at 100 Mbit/s: 5.09 to 6.13, runs leaving a plateau near 6.0-6.2
# at different rounds, or not at all); with 2 batches a slice (12 sequences, so 5 stretches per
# worker and round) six runs of blocking fp32 and int4 at 1 Gbit/s ended at 5.85-6.00, each
# descending steadily. docs/WAN.md, "Measured".
DEFAULT_SLICE_BATCHES = 2
# NOTE: three runs of each configuration: the figures are their medians (see combine).
DEFAULT_REPEATS = 3
DP_PORT = 51095
DP_SCRIPT = Path(__file__).resolve().with_name("wan_dp.py")
LOSS_TOLERANCE = 0.02  # the "within 2 %"
SPARSE_BYTES_GOAL = 1000.0  # the "≥ 1,000× fewer bytes than data-parallel"
UTILIZATION_GOAL = 0.95
BLOCKING_CEILING = 0.60


@dataclasses.dataclass(frozen=True)
class Grid:
    """What the section measures."""

    modes: tuple[str, ...] = DEFAULT_MODES
    codecs: tuple[str, ...] = DEFAULT_CODECS
    rates: tuple[float, ...] = DEFAULT_RATES
    sparse_modes: tuple[str, ...] = DEFAULT_SPARSE_MODES
    workers: int = DEFAULT_WORKERS
    rounds: int = DEFAULT_ROUNDS
    inner_steps: int = DEFAULT_INNER_STEPS
    batch_size: int = DEFAULT_BATCH_SIZE
    outer_momentum: float | None = DEFAULT_OUTER_MOMENTUM  # None: each mode's default
    slice_batches: int = DEFAULT_SLICE_BATCHES  # sequences per data slice, in batches
    repeats: int = DEFAULT_REPEATS  # runs of each DiLoCo configuration; its figures are their medians
    baseline: bool = True  # the data-parallel baseline
    # The parameter server (and the eval job) on a host of its own whose link carries the sum of
    # the workers' (tendril.lab.lab.LabSettings.paramserver_host); False: on worker-0's machine.
    paramserver_host: bool = True
    width: int = DEFAULT_WIDTH  # the GPT-2's n_embd (n_head: width // 64, at least 1); 0: the demo's model
    layers: int = DEFAULT_LAYERS  # its n_layer when width is set
    tls: bool = True

    def runs(self) -> list[tuple[float, str, str]]:
        """(rate, mode, codec) of every DiLoCo run, in order."""
        out: list[tuple[float, str, str]] = []
        for rate in self.rates:
            out += [(rate, mode, codec) for mode in self.modes for codec in self.codecs]
            out += [(rate, mode, "sparse") for mode in self.sparse_modes if "sparse" not in self.codecs]
        return out


def model_config(grid: Grid) -> dict[str, Any]:
    """[training.model.config] of the grid's model: the demo's GPT-2, or one ``width`` wide."""
    from tendril.scheduler.demo import MODELS

    if not grid.width:
        return dict(MODELS["gpt2"])
    return {"model_type": "gpt2", "n_layer": grid.layers, "n_head": max(1, grid.width // 64), "n_embd": grid.width}


def rate_name(rate: float) -> str:
    """100 -> "100 Mbit/s", 1000 -> "1 Gbit/s"."""
    if rate >= 1000 and rate % 1000 == 0:
        return f"{rate / 1000:g} Gbit/s"
    return f"{rate:g} Mbit/s"


def demo_settings(out: Path, grid: Grid, mode: str, codec: str) -> Any:
    from tendril.scheduler.demo import DemoSettings

    return DemoSettings(
        out=out,
        workers=grid.workers,
        rounds=grid.rounds,
        inner_steps=grid.inner_steps,
        batch_size=grid.batch_size,
        outer_momentum=grid.outer_momentum,
        max_bytes=1_000_000,
        sequences_per_slice=grid.slice_batches * grid.batch_size,
        run_id="wan",
        sync=mode,
        codec=codec,
        timeout_seconds=900.0,
    )


def diloco_figures(lines: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """What one DiLoCo run's metrics say, per worker where it is a sum."""
    from tendril.scheduler.metrics import run_stats

    stats = run_stats(lines)
    held_out = [line["eval_loss"] for line in lines if "eval_loss" in line]
    batches = sum(sum(line.get("batches", {}).values()) for line in lines)
    compute = sum(line.get("compute_seconds", 0.0) for line in lines)
    return {
        "rounds": len(lines),
        "utilization": stats["compute_utilization"],
        # NOTE: the run's last round syncs blocking in every mode (every worker ends at the
        # server's θ): one whole sync a run pays once. Beside the honest figure above, the
        # rounds before it, what a longer run of the same rounds tends to (docs/WAN.md).
        "utilization_before_last": run_stats(lines[:-1])["compute_utilization"] if len(lines) > 1 else None,
        "sync_share": stats["sync_share"],
        "waiting_share": stats["waiting_share"],
        "held_out_loss": held_out[-1] if held_out else None,
        "held_out_first": held_out[0] if held_out else None,
        "bytes_up_per_worker": sum(int(line.get("bytes_up", 0)) for line in lines) / workers,
        "bytes_down_per_worker": sum(int(line.get("bytes_down", 0)) for line in lines) / workers,
        "samples": sum(int(line.get("samples", 0)) for line in lines),
        "batches": batches,
        "step_seconds": compute / batches if batches else None,
        # per worker and round: Σ over workers / (rounds × workers)
        "round_compute_seconds": compute / (len(lines) * workers),
        "round_sync_seconds": sum(line.get("sync_seconds", 0.0) for line in lines) / (len(lines) * workers),
        "round_seconds": stats["round_seconds"],
        "load_average": stats["load_average"],
    }


def lab_root(work: Path) -> Path:
    """A new, empty folder for one lab: a worker's leases and jobs must not come back in the next.

    NOTE: short names: a job's bridge socket lies 40 characters below it and a Unix socket's path
    has at most 107 bytes.
    """
    labs = work / "labs"
    labs.mkdir(parents=True, exist_ok=True)
    index = len(list(labs.iterdir()))
    root = labs / str(index)
    shutil.rmtree(root, ignore_errors=True)
    return root


def run_diloco(work: Path, grid: Grid, rate: float, mode: str, codec: str) -> dict[str, Any]:
    """One lab, one DiLoCo run; its figures (``error`` set when the run failed)."""
    from tendril.lab.lab import Lab, LabSettings
    from tendril.lab.train import train

    settings = demo_settings(work / "wan", grid, mode, codec)
    root = lab_root(work)
    print(f"bench: wan {mode} {codec} {rate_name(rate)}: lab in {root}", file=sys.stderr, flush=True)
    began = time.monotonic()
    lab_settings = LabSettings(
        workers=grid.workers, rate_mbit=rate, tls=grid.tls, paramserver_host=grid.paramserver_host
    )
    with Lab(root, lab_settings) as lab:
        run = asyncio.run(train(lab, settings, model_config=model_config(grid)))
    result: dict[str, Any] = {"seconds": round(time.monotonic() - began, 1), "placement": placement(settings.out)}
    if run.scheduler_exit != 0 or len(run.lines) < grid.rounds:
        result["error"] = (
            f"scheduler exit {run.scheduler_exit}, {len(run.lines)} of {grid.rounds} rounds; it logged:\n"
            f"{run.scheduler_log[-1500:]}"
        )
        return result
    return result | diloco_figures(run.lines, grid.workers)


def placement(out: Path) -> dict[str, list[str]]:
    """Role -> the workers that held a lease of it in the run (from the scheduler's state file)."""
    from tendril.scheduler.state import STATE_FILE, RunStateStore

    if not (out / STATE_FILE).exists():
        return {}
    store = RunStateStore.open(out)
    try:
        members = store.members(ended=True)
    finally:
        store.close()
    roles: dict[str, list[str]] = {}
    for member in members:
        roles.setdefault(member.role, []).append(member.worker_id)
    return {role: sorted(workers) for role, workers in sorted(roles.items())}


def run_data_parallel(work: Path, grid: Grid, rate: float, steps: int) -> dict[str, Any]:
    """One lab, one gloo data-parallel run of ``steps`` steps per rank over its worker hosts; the
    ranks' figures combined."""
    from tendril.lab.lab import Lab, LabSettings, worker_name
    from tendril.scheduler.demo import prepare_data

    settings = demo_settings(work / "wan", grid, "blocking", "fp32")
    data = prepare_data(settings)
    model = {"task": "causal-lm", "config": model_config(grid)}
    folder = lab_root(work)
    folder.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with Lab(folder / "run", LabSettings(workers=grid.workers, rate_mbit=rate, tls=False)) as lab:
        master = f"{lab.host(worker_name(0)).ip}:{DP_PORT}"
        procs = []
        for rank in range(grid.workers):
            (folder / f"rank-{rank}.json").unlink(missing_ok=True)
            argv = ["env", "GLOO_SOCKET_IFNAME=eth0", sys.executable, str(DP_SCRIPT), "--rank", str(rank)]
            argv += ["--world", str(grid.workers), "--master", master, "--data", str(data)]
            argv += ["--model", json.dumps(model), "--steps", str(steps), "--batch-size", str(settings.batch_size)]
            argv += ["--lr", str(settings.lr), "--warmup-steps", "10", "--result", str(folder / f"rank-{rank}.json")]
            procs.append(lab.spawn(worker_name(rank), f"dp-rank-{rank}", argv))
        codes = [proc.popen.wait(timeout=900) for proc in procs]
        if any(codes):
            tails = "\n".join(f"rank {i}: {proc.tail(15)}" for i, proc in enumerate(procs) if codes[i])
            return {"error": f"data-parallel ranks exited {codes}:\n{tails}"}
    ranks = [json.loads((folder / f"rank-{rank}.json").read_text()) for rank in range(grid.workers)]
    world = grid.workers
    return {
        "seconds": round(time.monotonic() - began, 1),
        "utilization": statistics.mean(r["compute_seconds"] / r["seconds"] for r in ranks),
        "held_out_loss": ranks[0]["eval_loss"],
        "bytes_up_per_worker": statistics.mean(r["tx_bytes"] for r in ranks),
        # what a ring all_reduce sends per rank: 2 (n-1)/n of the gradient per step
        "ring_bytes_per_worker": steps * ranks[0]["gradient_bytes"] * 2 * (world - 1) / world,
        "all_reduce_seconds": statistics.mean(r["all_reduce_seconds"] for r in ranks),
        "step_seconds": statistics.mean(r["compute_seconds"] / r["steps"] for r in ranks),
        "samples": steps * settings.batch_size * world,
        "steps": steps,
    }


def baseline_steps(grid: Grid, runs: list[dict[str, Any]]) -> int:
    """Steps per rank that train as many samples as the DiLoCo runs did (their median).

    NOTE: a DiLoCo round is ``inner_steps`` batches of the typical worker, not of each: the
    scheduler's planner lines the workers' arrivals up in time (tendril.scheduler.planner), and
    the run's first round is planned only after every worker's first batches were timed. So the
    samples a run trained are counted, not assumed; rounds × inner_steps is the fallback.
    """
    samples = [got["samples"] for got in runs if "error" not in got and got.get("samples")]
    if not samples:
        return grid.rounds * grid.inner_steps
    return max(1, round(statistics.median(samples) / (grid.batch_size * grid.workers)))


def _name(mode: str, codec: str, rate: float, what: str) -> str:
    return f"WAN {mode} {codec} {rate_name(rate)}: {what}"


def figures(grid: Grid, results: dict[tuple[float, str, str], dict[str, Any]]) -> list[Figure]:
    """The table's lines from every run's figures (keys (rate, mode, codec); mode "data-parallel"
    with codec "fp32" is the baseline)."""
    out: list[Figure] = []
    for rate in grid.rates:
        dp = results.get((rate, "data-parallel", "fp32"), {})
        dp_name = f"data-parallel (gloo all_reduce every step), {rate_name(rate)}"
        if grid.baseline:
            if "error" in dp:
                out.append(Figure.not_measured(f"WAN data-parallel {rate_name(rate)}", f"failed: {dp['error']}"))
            elif dp:
                for what, key, unit in (
                    ("compute utilization", "utilization", ""),
                    ("held-out loss", "held_out_loss", ""),
                    ("bytes sent per worker per run", "bytes_up_per_worker", "bytes"),
                ):
                    out.append(
                        Figure(
                            f"WAN data-parallel fp32 {rate_name(rate)}: {what}",
                            dp[key],
                            unit,
                            note=f"{dp['steps']} steps; ring all_reduce {dp['ring_bytes_per_worker'] / 1e6:.2f} MB "
                            f"per worker; eth0 {dp['bytes_up_per_worker'] / 1e6:.2f} MB"
                            if key == "bytes_up_per_worker"
                            else "",
                            details=dp,
                        )
                    )
        blocking_fp32 = results.get((rate, "blocking", "fp32"), {})
        for r, mode, codec in grid.runs():
            if r != rate:
                continue
            got = results.get((rate, mode, codec), {})
            if "error" in got or not got:
                out.append(Figure.not_measured(_name(mode, codec, rate, "run"), f"failed: {got.get('error', '?')}"))
                continue
            base = {} if "error" in dp else dp
            util = Figure(
                _name(mode, codec, rate, "compute utilization"),
                round(got["utilization"], 4),
                "",
                base.get("utilization"),
                dp_name if base else "",
                note=(
                    f"rounds before the last {got['utilization_before_last']:.3f}; "
                    if got.get("utilization_before_last") is not None
                    else ""
                )
                + f"sync {got['sync_share']:.1%}, waiting {got['waiting_share']:.1%}; "
                f"round compute {got['round_compute_seconds']:.2f} s, round sync {got['round_sync_seconds']:.2f} s; "
                f"load {got['load_average']:.1f}" + _repeats_note(got, "utilization"),
                details=got,
            )
            if mode != "blocking" and rate == 100 and codec != "sparse":
                util.target = f"≥ {UTILIZATION_GOAL} (with blocking fp32 ≤ {BLOCKING_CEILING})"
                blocking = blocking_fp32.get("utilization")
                util.ok = got["utilization"] >= UTILIZATION_GOAL and (blocking is None or blocking <= BLOCKING_CEILING)
            out.append(util)
            loss = Figure(
                _name(mode, codec, rate, f"held-out loss after {got['rounds']} rounds"),
                got["held_out_loss"],
                "",
                base.get("held_out_loss"),
                dp_name if base else "",
                note=f"after round 0: {got['held_out_first']:.3f}; {got['samples']:g} samples"
                + _repeats_note(got, "held_out_loss"),
            )
            reference = results.get((rate, mode, "fp32"), {}) if codec == "int4" else blocking_fp32
            if codec in ("int4", "sparse") and reference.get("held_out_loss") and got["held_out_loss"] is not None:
                ref_name = f"{mode} fp32" if codec == "int4" else "blocking fp32"
                loss.target = f"≤ {1 + LOSS_TOLERANCE:.2f} × {ref_name} ({reference['held_out_loss']:.3f})"
                loss.ok = got["held_out_loss"] <= (1 + LOSS_TOLERANCE) * reference["held_out_loss"]
            out.append(loss)
            sent = got["bytes_up_per_worker"]
            ratio = base["bytes_up_per_worker"] / sent if base and sent else None
            out.append(
                Figure(
                    _name(mode, codec, rate, "bytes sent per worker per run"),
                    sent,
                    "bytes",
                    base.get("bytes_up_per_worker"),
                    dp_name if base else "",
                    note=f"{sent:,.0f} B pushed, {got['bytes_down_per_worker']:,.0f} B pulled"
                    + (f"; {ratio:,.0f}× fewer than data-parallel" if ratio else ""),
                )
            )
            if ratio is not None:
                fewer = Figure(_name(mode, codec, rate, "data-parallel bytes / these bytes"), round(ratio, 1), "×")
                if codec == "sparse":
                    fewer.target = f"≥ {SPARSE_BYTES_GOAL:,.0f}"
                    fewer.ok = ratio >= SPARSE_BYTES_GOAL
                out.append(fewer)
    return out


def grid_table(grid: Grid, results: dict[tuple[float, str, str], dict[str, Any]]) -> list[str]:
    """The results as a Markdown table (what docs/WAN.md shows)."""
    rows = [
        "| rate | sync | codec | compute utilization | held-out loss | bytes sent per worker per run | "
        "vs data-parallel | round compute / sync (s) | run (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in grid.rates:
        dp = results.get((rate, "data-parallel", "fp32"), {})
        keys = ([("data-parallel", "fp32")] if grid.baseline else []) + [(m, c) for r, m, c in grid.runs() if r == rate]
        for mode, codec in keys:
            got = results.get((rate, mode, codec), {})
            if not got or "error" in got:
                rows.append(f"| {rate_name(rate)} | {mode} | {codec} | failed | | | | | |")
                continue
            sent = got["bytes_up_per_worker"]
            ratio = (
                "1×"
                if mode == "data-parallel"
                else (f"{dp['bytes_up_per_worker'] / sent:,.0f}× fewer" if dp and "error" not in dp and sent else "")
            )
            split = (
                f"{got['step_seconds']:.3f} / step; all_reduce {got['all_reduce_seconds'] / got['steps']:.3f} / step"
                if mode == "data-parallel"
                else f"{got['round_compute_seconds']:.2f} / {got['round_sync_seconds']:.2f}"
            )
            loss = got["held_out_loss"]
            rows.append(
                f"| {rate_name(rate)} | {mode} | {codec} | {got['utilization']:.3f} | "
                f"{'—' if loss is None else f'{loss:.3f}'} | {sent / 1e6:,.3f} MB | {ratio} | {split} | "
                f"{got.get('seconds', 0):.0f} |"
            )
    return rows


def measure(work: Path, grid: Grid | None = None) -> list[Figure]:
    """Every run of ``grid``; skipped (one line saying why) where namespaces cannot be made."""
    from tendril.lab.net import namespaces_unavailable

    grid = grid or Grid()
    if why := namespaces_unavailable():
        print(f"bench: wan skipped: {why}", file=sys.stderr, flush=True)
        return [Figure.not_measured("WAN", f"skipped: the lab cannot create network namespaces here: {why}")]
    results: dict[tuple[float, str, str], dict[str, Any]] = {}
    for rate in grid.rates:
        for r, mode, codec in grid.runs():
            if r == rate:
                print(f"bench: wan {mode} {codec} {rate_name(rate)} ...", file=sys.stderr, flush=True)
                runs = [_guarded(run_diloco, work, grid, rate, mode, codec) for _ in range(max(1, grid.repeats))]
                results[(rate, mode, codec)] = combine(runs)
        if grid.baseline:
            steps = baseline_steps(grid, [got for (r, m, _), got in results.items() if r == rate])
            print(f"bench: wan data-parallel {rate_name(rate)}, {steps} steps ...", file=sys.stderr, flush=True)
            results[(rate, "data-parallel", "fp32")] = _guarded(run_data_parallel, work, grid, rate, steps)
    print("\n".join(grid_table(grid, results)), flush=True)
    return figures(grid, results)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's figures over its repeats: each number the median over the runs that
    finished, and every finished run's held-out loss and utilization in ``repeats``.

    NOTE: the held-out loss of one short run spreads by several per cent from run to run (runs
    leave a loss plateau at different rounds: docs/WAN.md, "Measured"), more than the 2 % the
    goals compare; a comparison needs the medians of several runs.
    """
    finished = [got for got in runs if "error" not in got]
    if len(runs) == 1 or not finished:
        return runs[-1]
    out = dict(finished[0])
    for key, value in finished[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [got.get(key) for got in finished]
            if all(isinstance(v, int | float) for v in values):
                out[key] = statistics.median(values)  # type: ignore[type-var]
    out["repeats"] = {
        "held_out_loss": [got.get("held_out_loss") for got in finished],
        "utilization": [got.get("utilization") for got in finished],
        "failed": len(runs) - len(finished),
    }
    return out


def _repeats_note(got: dict[str, Any], key: str) -> str:
    """The end of a figure's note when it is a median over repeats: ``; median of 3 runs: a, b, c``."""
    repeats = got.get("repeats")
    if not repeats:
        return ""
    values = ", ".join(f"{v:.3f}" for v in repeats[key] if v is not None)
    failed = f" ({repeats['failed']} failed)" if repeats["failed"] else ""
    return f"; median of {len(repeats[key])} runs{failed}: {values}"


def _guarded(run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """One run's figures, or its failure (the other runs still go on)."""
    try:
        result = run(*args)
    except Exception as exc:  # one failed run must not hide the others' figures
        result = {"error": f"{type(exc).__name__}: {exc}"}
    if "error" in result:
        print(f"bench: wan run failed: {result['error']}", file=sys.stderr, flush=True)
    else:
        print(
            f"bench: wan ... utilization {result['utilization']:.3f}, held-out loss {result['held_out_loss']}, "
            f"{result['bytes_up_per_worker']:,.0f} B sent per worker, {result['samples']} samples, "
            f"{result.get('seconds', 0):.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return result
