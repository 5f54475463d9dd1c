"""`tendril lab run|up|measure|clean` (also ``python -m tendril.lab``): see docs/WAN.md."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from tendril.core.codecs import CODECS

DEFAULT_OUT = Path("lab-out")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected Mbit/s as a number, got {text!r}") from exc
    if not 0.1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"expected 0.1-100000 Mbit/s, got {value}")
    return value


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected milliseconds as a number, got {text!r}") from exc
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 0-1000 ms, got {value}")
    return value


LATENCY_HELP = "one-way delay added between hosts by the lab's relay, in ms (round trip +2x; default 0)"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from exc
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"expected 1-64, got {value}")
    return value


def add_parser(subparsers: Any) -> None:
    """Add the ``lab`` group."""
    group: argparse.ArgumentParser = subparsers.add_parser(
        "lab", help="a multi-host lab: network namespaces over shaped links (root)"
    )
    group.set_defaults(group_parser=group)
    fill_parser(group)


def fill_parser(group: argparse.ArgumentParser) -> None:
    commands = group.add_subparsers(title="lab commands", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="build a lab, measure a link, train a short DiLoCo run over the shaped links, clean up",
        description="Gateway, data node, scheduler and N workers, each in its own network namespace, every link "
        "shaped to --rate with tbf; trains the demo's tiny model and prints rounds, loss, bytes moved and the "
        "measured link rate. Everything is removed at the end, also on Ctrl-C.",
    )
    run.add_argument("--workers", type=_count, default=3, help="training workers (default 3)")
    run.add_argument("--rate", type=_rate, default=100.0, help="each host's link in Mbit/s, each way (default 100)")
    run.add_argument("--rounds", type=int, default=4, help="DiLoCo rounds (default 4)")
    run.add_argument("--inner-steps", type=int, default=20, help="H: batches per round (default 20)")
    run.add_argument(
        "--sync",
        choices=("blocking", "overlapped", "streaming"),
        default="blocking",
        help="training.sync: wait for each round's update, train on while it travels, or sync θ in fragments "
        "(default blocking)",
    )
    run.add_argument(
        "--codec", choices=CODECS, default="fp32", help="training.codec: how pseudo-gradients travel (default fp32)"
    )
    run.add_argument("--batch-size", type=_count, default=8, help="sequences per inner step (default 8)")
    run.add_argument("--latency-ms", type=_latency, default=0.0, help=LATENCY_HELP)
    run.add_argument(
        "--paramserver-host",
        action="store_true",
        help="the parameter server (and the eval job) on a host of its own instead of worker-0's machine",
    )
    run.add_argument(
        "--paramserver-rate",
        type=_rate,
        default=None,
        help="that host's link in Mbit/s, each way (default: workers x --rate, the sum of the links it serves)",
    )
    run.add_argument("--no-tls", action="store_true", help="plaintext instead of mTLS with per-host certificates")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    run.set_defaults(func=run_run)

    up = commands.add_parser(
        "up",
        help="build a lab with a gateway and wait (Ctrl-C / SIGTERM removes it)",
        description="Build the namespaces and links, start a gateway on its host, print the hosts and wait.",
    )
    up.add_argument("--workers", type=_count, default=2, help="worker hosts (default 2; no worker is started)")
    up.add_argument("--rate", type=_rate, default=100.0, help="each host's link in Mbit/s (default 100)")
    up.add_argument("--latency-ms", type=_latency, default=0.0, help=LATENCY_HELP)
    up.add_argument("--no-tls", action="store_true", help="a plaintext gateway")
    up.add_argument("--out", type=Path, default=None, help="folder for logs and certificates (default: a temp dir)")
    up.set_defaults(func=run_up)

    measure = commands.add_parser(
        "measure",
        help="build two hosts per rate and measure a raw TCP transfer between them",
        description="For each --rate: a lab of two hosts, SECONDS of TCP from one to the other, the rate seen.",
    )
    measure.add_argument("--rate", type=_rate, action="append", help="Mbit/s (repeatable; default 100 and 1000)")
    measure.add_argument("--seconds", type=float, default=3.0, help="length of each transfer (default 3)")
    measure.add_argument("--latency-ms", type=_latency, default=0.0, help=LATENCY_HELP)
    measure.set_defaults(func=run_measure)

    clean = commands.add_parser(
        "clean",
        help="remove leftovers of labs whose process is gone (namespaces tlab-*, links tlab*, their processes)",
    )
    clean.add_argument("--all", action="store_true", help="also remove the labs of running processes")
    clean.set_defaults(func=run_clean)


def _check() -> str:
    from tendril.lab.net import namespaces_unavailable

    return namespaces_unavailable()


def run_run(args: argparse.Namespace) -> int:
    from tendril.lab.lab import Lab, LabSettings
    from tendril.lab.train import summary, train
    from tendril.scheduler.demo import DemoSettings

    if why := _check():
        print(f"lab: {why}", file=sys.stderr)
        return 2
    if args.paramserver_rate is not None and not args.paramserver_host:
        print("lab: --paramserver-rate needs --paramserver-host", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = LabSettings(
        workers=args.workers,
        rate_mbit=args.rate,
        tls=not args.no_tls,
        latency_ms=args.latency_ms,
        paramserver_host=args.paramserver_host,
        paramserver_rate_mbit=args.paramserver_rate or 0.0,
    )
    demo = DemoSettings(
        out=out,
        workers=args.workers,
        rounds=args.rounds,
        inner_steps=args.inner_steps,
        batch_size=args.batch_size,
        codec=args.codec,
        max_bytes=1_000_000,
        sequences_per_slice=64,
        run_id="lab",
        sync=args.sync,
        timeout_seconds=900.0,
    )
    with Lab(out / "run", settings) as lab:
        hosts = ", ".join(f"{h.name} {h.ip}" for h in lab.network.hosts.values())
        print(
            f"lab {lab.lab_id}: {hosts}; every link {args.rate:g} Mbit/s each way (tbf)"
            + (f", the parameter server's {settings.paramserver_link_mbit:g} Mbit/s" if args.paramserver_host else "")
            + f", {args.latency_ms:g} ms added one way; mTLS {settings.tls}; sync {args.sync}; codec {args.codec}"
        )
        link = asyncio.run(lab.measure("worker-1" if args.workers > 1 else "gateway", "worker-0"))
        print(
            f"lab: raw TCP between two hosts {link['mbit_per_s']:.1f} Mbit/s (shaped to {args.rate:g}), "
            f"round trip {link['rtt_ms']:.2f} ms"
        )
        result = asyncio.run(train(lab, demo))
    print(f"lab: removed every namespace, link and process of lab {lab.lab_id}")
    for line in summary(result):
        print(f"lab: {line}")
    if result.scheduler_exit != 0 or not result.lines:
        print(f"lab: the run failed (scheduler exit {result.scheduler_exit}); it logged:\n{result.scheduler_log}")
        print(f"lab: logs of every process in {out / 'run' / 'logs'}", file=sys.stderr)
        return 1
    return 0


def run_up(args: argparse.Namespace) -> int:
    from tendril.lab.lab import Lab, LabSettings

    if why := _check():
        print(f"lab: {why}", file=sys.stderr)
        return 2
    out = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="tendril-lab-"))
    settings = LabSettings(workers=args.workers, rate_mbit=args.rate, tls=not args.no_tls, latency_ms=args.latency_ms)
    with Lab(out, settings) as lab:
        gateway = asyncio.run(lab.start_gateway())
        print(f"lab {lab.lab_id} up; gateway {gateway}; logs {out / 'logs'}", flush=True)
        for host in lab.network.hosts.values():
            print(f"  {host.name:<10} {host.ip:<15} ip netns exec {host.netns} ...", flush=True)
        print("Ctrl-C or SIGTERM removes it", flush=True)
        while True:
            signal.pause()


def run_measure(args: argparse.Namespace) -> int:
    from tendril.lab.lab import Lab, LabSettings

    if why := _check():
        print(f"lab: {why}", file=sys.stderr)
        return 2
    for rate in args.rate or [100.0, 1000.0]:
        with (
            tempfile.TemporaryDirectory(prefix="tendril-lab-") as tmp,
            Lab(Path(tmp), LabSettings(workers=2, rate_mbit=rate, tls=False, latency_ms=args.latency_ms)) as lab,
        ):
            link = asyncio.run(lab.measure("worker-1", "worker-0", args.seconds))
        print(
            f"lab: shaped to {rate:g} Mbit/s, {args.latency_ms:g} ms added: raw TCP {link['mbit_per_s']:.1f} Mbit/s "
            f"({link['bytes'] / 1e6:.1f} MB, rate over {link['seconds']:.1f} s, "
            f"{100 * link['mbit_per_s'] / rate:.0f} %), "
            f"round trip {link['rtt_ms']:.2f} ms"
        )
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from tendril.lab.net import clean

    if why := _check():
        print(f"lab: {why}", file=sys.stderr)
        return 2
    done = clean(everything=args.all)
    for lab_id, removed in done.items():
        print(f"lab {lab_id}: removed {', '.join(removed) or 'its record'}")
    if not done:
        print("lab: nothing to clean")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tendril.lab", description="Tendril's multi-host lab.")
    fill_parser(parser)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    from tendril.core.errors import TendrilError

    try:
        return int(args.func(args) or 0)
    except TendrilError as exc:
        print(f"lab: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted; every namespace, link and process of the lab was removed", file=sys.stderr)
        return 130
