"""`tendril data prepare|serve`: the data set command group.

``add_parser(subparsers)`` registers the group with the ``tendril`` console script; each
subcommand sets ``func(args) -> exit code``. ``python -m tendril.data_node`` runs the
same commands without the console script (what the demo and the tests start).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tendril.core import tls, tracing
from tendril.core.config import split_address
from tendril.core.errors import ConfigError, TendrilError
from tendril.data_node.corpus import STDLIB_SOURCE, collect_files, stdlib_corpus
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.service import DEFAULT_LISTEN, DataNodeOptions
from tendril.data_node.tokenizer import load_tokenizer


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    """Add the ``data`` group with ``prepare`` and ``serve``."""
    group: argparse.ArgumentParser = subparsers.add_parser("data", help="prepare and serve training data sets")
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="data commands", metavar="COMMAND")

    prep = commands.add_parser(
        "prepare",
        help="turn a folder of text files into SafeTensors slices plus manifest.json",
        description="Tokenize text files into input_ids [N, seq_len] int32 slices (slice-00000.safetensors ...) "
        f"and a manifest. SRC is a folder or a file, or {STDLIB_SOURCE} for the .py sources of this Python's "
        "standard library.",
    )
    prep.add_argument("src", metavar="SRC", help=f"folder of text files, a file, or {STDLIB_SOURCE}")
    prep.add_argument("out", metavar="OUT", type=Path, help="new (or empty) output folder")
    prep.add_argument("--seq-len", type=_positive_int, default=128, help="tokens per sequence (default 128)")
    prep.add_argument(
        "--sequences-per-slice",
        type=_positive_int,
        default=PrepareOptions.sequences_per_slice,
        metavar="N",
        help=f"sequences per slice file (default {PrepareOptions.sequences_per_slice})",
    )
    prep.add_argument("--tokenizer", metavar="PATH", help="HuggingFace tokenizer.json (default: byte-level, 257 ids)")
    prep.add_argument("--dataset-id", metavar="ID", help="data set id (default: OUT's folder name)")
    prep.add_argument("--max-bytes", type=_positive_int, metavar="N", help="read at most N source bytes")
    prep.add_argument(
        "--suffix", action="append", default=[], metavar=".EXT", help="only files ending in .EXT (repeatable)"
    )
    prep.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=run_prepare)

    serve = commands.add_parser(
        "serve",
        help="serve a prepared data set (DataNodeService) and announce it in the gateway registry",
        description="Serve DIR's slices as resumable 1 MiB chunk streams until Ctrl-C / SIGTERM.",
    )
    serve.add_argument("dir", metavar="DIR", type=Path, help="a folder written by `tendril data prepare`")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR", help=f"default {DEFAULT_LISTEN}")
    serve.add_argument("--gateway", default="", metavar="ADDR", help="gateway to announce the data set at")
    serve.add_argument("--dataset-id", metavar="ID", help="serve under this id (default: the manifest's)")
    serve.add_argument("--advertise", default="", metavar="ADDR", help="address announced (default: the bound one)")
    serve.add_argument("--registry-ttl", type=float, default=15.0, metavar="SECONDS", help="record TTL (default 15)")
    serve.add_argument("--verify", action="store_true", help="check every slice's sha256 before serving")
    serve.add_argument("--log-level", default="info", help="debug, info, warning, error")
    tls.add_tls_args(serve)
    serve.set_defaults(func=run_serve)


def run_prepare(args: argparse.Namespace) -> int:
    files = stdlib_corpus() if args.src == STDLIB_SOURCE else collect_files(Path(args.src), args.suffix)
    tokenizer = load_tokenizer(args.tokenizer)
    options = PrepareOptions(
        seq_len=args.seq_len,
        sequences_per_slice=args.sequences_per_slice,
        dataset_id=args.dataset_id,
        max_bytes=args.max_bytes,
        force=args.force,
        progress=not args.no_progress,
    )
    start = time.perf_counter()
    manifest = prepare_dataset(files, args.out, tokenizer, options)
    print(
        f"prepared data set {manifest.dataset_id!r} in {args.out}: {len(manifest.slices)} slices, "
        f"{manifest.num_sequences} sequences of {manifest.seq_len} tokens, vocab {manifest.vocab_size} "
        f"({manifest.tokenizer}), {manifest.total_bytes} bytes from {manifest.documents} files "
        f"in {time.perf_counter() - start:.1f}s"
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    for flag, value in (("--listen", args.listen), ("--gateway", args.gateway), ("--advertise", args.advertise)):
        if value:
            try:
                split_address(value)
            except ValueError as exc:
                raise ConfigError(f"{flag}: {exc}", key=flag) from exc
    if args.registry_ttl <= 0:
        raise ConfigError(f"--registry-ttl must be positive, got {args.registry_ttl}", key="--registry-ttl")
    tls.configure_from_args(args)
    from tendril.core.logs import configure
    from tendril.core.server import run_until_signal
    from tendril.data_node.service import DataNode

    configure("data_node", level=args.log_level)
    tracing.setup("data-node")
    options = DataNodeOptions(
        folder=args.dir,
        listen=args.listen,
        gateway=args.gateway,
        dataset_id=args.dataset_id,
        advertise=args.advertise,
        registry_ttl_seconds=args.registry_ttl,
        verify=args.verify,
    )

    async def main() -> None:
        node = DataNode(options)
        await run_until_signal(node.start, node.stop)

    asyncio.run(main())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tendril.data_node")
    add_parser(parser.add_subparsers(metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tendril.data_node prepare|serve ...`` (the flags of ``tendril data``)."""
    parser = build_parser()
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    func = getattr(args, "func", None)
    if func is None:
        (getattr(args, "group_parser", None) or parser).print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except TendrilError as exc:
        print(f"tendril data: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
