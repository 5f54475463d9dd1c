"""``python -m bench [--only codecs,stream,paramserver,sync,streams,bridge,demo,gateway,wan] [--out bench-out]``.

``--only external`` is short for ``bridge,demo`` (the figures other parts of Tendril provide).
``wan`` (the lab's figures, :mod:`bench.wan`) runs only when named: it takes many minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import gateway, sync, wan
from bench.common import GIB, MIB, Figure, data_plane_env

SECTIONS = ("codecs", "stream", "paramserver", "sync", "streams", "bridge", "demo", "gateway")
# NOTE: not in the default run: one lab and one training run per configuration (docs/WAN.md).
ON_REQUEST = ("wan",)
ALIASES = {"external": ("bridge", "demo")}


def _reexec_with_tunables() -> None:
    """Become a data-plane process: GLIBC_TUNABLES must be set before the first malloc."""
    env = data_plane_env()
    if os.environ.get("GLIBC_TUNABLES") != env["GLIBC_TUNABLES"]:
        os.execve(sys.executable, [sys.executable, "-m", "bench", *sys.argv[1:]], env)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "bytes":
        return f"{value / MIB:.2f} MiB"
    return f"{value:g} {unit}".strip()


def print_table(figures: list[Figure]) -> None:
    rows = [("figure", "value", "baseline (same run)", "target", "ok", "note")]
    for f in figures:
        baseline = f"{_format(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None else ""
        ok = "" if f.ok is None else ("yes" if f.ok else "NO")
        rows.append((f.name, _format(f.value, f.unit) if f.value is not None else "—", baseline, f.target, ok, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row[:5])) + "  " + row[5])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 4)


def main() -> int:
    parser = argparse.ArgumentParser(description="Tendril data-plane benchmark")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all of them), or {', '.join(ON_REQUEST)} "
        "('external': bridge,demo)",
    )
    parser.add_argument("--out", default="bench-out", help="where results.json goes")
    parser.add_argument("--stream-mib", type=int, default=GIB // MIB, help="tensor stream payload size")
    parser.add_argument("--model-mib", type=int, default=256, help="model size for the ParameterServer RSS figure")
    parser.add_argument(
        "--sync-mb",
        type=_int_list,
        default=",".join(str(mb) for mb in sync.DEFAULT_SIZES_MB),
        help="round sync payload sizes in MB (10^6 bytes of fp32 Δ), comma-separated",
    )
    parser.add_argument(
        "--sync-codecs", default=",".join(sync.DEFAULT_CODECS), help="round sync codecs, comma-separated"
    )
    parser.add_argument(
        "--sync-rounds",
        type=int,
        default=sync.DEFAULT_ROUNDS,
        help=f"round sync rounds per size and codec (the first {sync.WARMUP} are warm-up)",
    )
    parser.add_argument(
        "--sync-work-dir",
        type=Path,
        default=None,
        help="round sync: folder the workers' work dirs go under (default: the bench's temporary folder; "
        "on a file system held in memory, such as /dev/shm, Δ and u go into files kept from round to round)",
    )
    parser.add_argument(
        "--sync-handoff-dir",
        type=lambda value: Path(value) if value else None,
        default=sync.DEFAULT_HANDOFF_DIR,
        help="round sync: where each worker's handoff/ folder goes, as a worker's job.handoff_dir "
        f"(default {sync.DEFAULT_HANDOFF_DIR}; '' offers none: Δ and u then go to updates/ in the work dir)",
    )
    parser.add_argument(
        "--gateway-backend",
        default="memory",
        choices=sorted(gateway.BACKENDS),
        help="the gateway's state backend for the gateway section (redis: a private redis-server the bench starts)",
    )
    parser.add_argument(
        "--gateway-steps",
        type=_int_list,
        default=",".join(str(n) for n in gateway.DEFAULT_STEPS),
        help="simulated worker counts of the gateway section, stepped up until p99 offer latency passes 1 s",
    )
    parser.add_argument(
        "--wan-modes", type=_names, default=",".join(wan.DEFAULT_MODES), help="wan: sync modes (training.sync)"
    )
    parser.add_argument("--wan-codecs", type=_names, default=",".join(wan.DEFAULT_CODECS), help="wan: codecs")
    parser.add_argument(
        "--wan-sparse-modes",
        type=_names,
        default=",".join(wan.DEFAULT_SPARSE_MODES),
        help="wan: sync modes the sparse codec is measured in (empty: none)",
    )
    parser.add_argument(
        "--wan-rates", type=_float_list, default=",".join(f"{r:g}" for r in wan.DEFAULT_RATES), help="wan: Mbit/s"
    )
    parser.add_argument("--wan-workers", type=int, default=wan.DEFAULT_WORKERS, help="wan: worker hosts")
    parser.add_argument("--wan-rounds", type=int, default=wan.DEFAULT_ROUNDS, help="wan: DiLoCo rounds")
    parser.add_argument("--wan-inner-steps", type=int, default=wan.DEFAULT_INNER_STEPS, help="wan: batches per round")
    parser.add_argument("--wan-batch-size", type=int, default=wan.DEFAULT_BATCH_SIZE, help="wan: sequences per batch")
    parser.add_argument(
        "--wan-repeats",
        type=int,
        default=wan.DEFAULT_REPEATS,
        help="wan: runs of each DiLoCo configuration (figures: their medians)",
    )
    parser.add_argument(
        "--wan-slice-batches",
        type=int,
        default=wan.DEFAULT_SLICE_BATCHES,
        help="wan: the data set's slices hold this many batches of sequences",
    )
    parser.add_argument(
        "--wan-outer-momentum",
        type=lambda s: None if s == "default" else float(s),
        default=wan.DEFAULT_OUTER_MOMENTUM,
        help="wan: outer momentum of every dense run ('default': each sync mode's own)",
    )
    parser.add_argument("--wan-no-baseline", action="store_true", help="wan: leave out the data-parallel baseline")
    parser.add_argument(
        "--wan-paramserver-on-worker",
        action="store_true",
        help="wan: the parameter server on worker-0's machine, not on a host of its own",
    )
    parser.add_argument(
        "--wan-width", type=int, default=wan.DEFAULT_WIDTH, help="wan: a GPT-2 this wide (0: the demo's model)"
    )
    parser.add_argument("--wan-layers", type=int, default=wan.DEFAULT_LAYERS, help="wan: its layers (with --wan-width)")
    args = parser.parse_args()
    named = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(named) - set(SECTIONS) - set(ON_REQUEST) - set(ALIASES)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join([*SECTIONS, *ON_REQUEST, *ALIASES])}")
    if args.wan_slice_batches < 1 or args.wan_repeats < 1:
        parser.error("--wan-slice-batches and --wan-repeats must be at least 1")
    wanted = list(dict.fromkeys(part for name in named for part in ALIASES.get(name, (name,))))

    from bench import codecs, external, paramserver, stream, streams

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.time()
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tendril-bench-") as tmp:
        work = Path(tmp)
        runs: dict[str, Callable[[], list[Figure]]] = {
            "codecs": lambda: codecs.measure(work),
            "stream": lambda: [stream.measure(work, args.stream_mib * MIB)],
            "paramserver": lambda: paramserver.measure(work, args.model_mib * MIB),
            "sync": lambda: sync.measure(
                work,
                args.sync_mb,
                [c.strip() for c in args.sync_codecs.split(",") if c.strip()],
                args.sync_rounds,
                work_root=args.sync_work_dir,
                handoff_dir=args.sync_handoff_dir,
            ),
            "streams": lambda: streams.measure(work),
            "bridge": lambda: external.bridge_report_progress(work),
            "demo": lambda: external.demo_data(work),
            "gateway": lambda: gateway.measure(work, backend=args.gateway_backend, steps=args.gateway_steps),
            "wan": lambda: wan.measure(
                work,
                wan.Grid(
                    modes=tuple(args.wan_modes),
                    codecs=tuple(args.wan_codecs),
                    rates=tuple(args.wan_rates),
                    sparse_modes=tuple(args.wan_sparse_modes),
                    workers=args.wan_workers,
                    rounds=args.wan_rounds,
                    inner_steps=args.wan_inner_steps,
                    batch_size=args.wan_batch_size,
                    outer_momentum=args.wan_outer_momentum,
                    repeats=args.wan_repeats,
                    slice_batches=args.wan_slice_batches,
                    baseline=not args.wan_no_baseline,
                    paramserver_host=not args.wan_paramserver_on_worker,
                    width=args.wan_width,
                    layers=args.wan_layers,
                ),
            ),
        }
        for section in wanted:
            t0 = time.perf_counter()
            print(f"bench: {section} ...", file=sys.stderr, flush=True)
            try:
                got = runs[section]()
            except Exception as exc:  # one broken section must not hide the others' figures
                traceback.print_exc()
                errors[section] = f"{type(exc).__name__}: {exc}"
                got = [Figure.not_measured(section, f"failed: {type(exc).__name__}: {exc}")]
            print(f"bench: {section} took {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            figures.extend(got)
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        },
        "figures": [dataclasses.asdict(f) for f in figures],
        "errors": errors,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print()
    print_table(figures)
    print(
        f"\n{len(figures)} figures in {result['seconds']} s on {os.cpu_count()} CPUs "
        f"(load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after); wrote {out / 'results.json'}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    _reexec_with_tunables()
    sys.exit(main())
