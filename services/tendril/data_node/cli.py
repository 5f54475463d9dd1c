"""`tendril data prepare|add-model|serve`: the data set command group.

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
from tendril.core.errors import ConfigError, ErrorKind, TendrilError
from tendril.data_node.chat import ChatFields
from tendril.data_node.corpus import STDLIB_SOURCE, stdlib_corpus
from tendril.data_node.errors import DataNodeError, DatasetReason
from tendril.data_node.manifest import TASKS, load_manifest
from tendril.data_node.models import MODEL_ASSET, add_model
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.service import DEFAULT_LISTEN, DataNodeOptions
from tendril.data_node.sources import Source
from tendril.data_node.tokenizer import load_tokenizer
from tendril_sdk.uris import DATA_SCHEME


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    """Add the ``data`` group with ``prepare``, ``add-model`` and ``serve``."""
    group: argparse.ArgumentParser = subparsers.add_parser("data", help="prepare and serve training data sets")
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="data commands", metavar="COMMAND")

    prep = commands.add_parser(
        "prepare",
        help="turn text, JSONL, CSV, Parquet or a datasets folder into SafeTensors slices plus manifest.json",
        description="Tokenize (or, for images, process) a source into slices of named tensors "
        "(slice-00000.safetensors ...), a held-out split (eval-00000.safetensors ...), the tokenizer or "
        "image processor as an asset (tokenizer.tar / processor.tar) and manifest.json. SRC is a folder or a "
        "file (.jsonl/.ndjson/.json lines, .csv, .parquet, anything else is read as text), a folder saved "
        f"with datasets' save_to_disk, or {STDLIB_SOURCE} for the .py sources of this Python's standard library.",
    )
    prep.add_argument("src", metavar="SRC", help=f"folder, file, datasets folder, or {STDLIB_SOURCE}")
    prep.add_argument("out", metavar="OUT", type=Path, help="new (or empty) output folder")
    prep.add_argument("--task", choices=TASKS, default="causal-lm", help="what the data set trains (default causal-lm)")
    prep.add_argument("--seq-len", type=_positive_int, default=128, help="tokens per sequence (default 128)")
    prep.add_argument(
        "--sequences-per-slice",
        type=_positive_int,
        metavar="N",
        help="examples per slice file (default: as many as make about 1 MiB)",
    )
    tok = prep.add_mutually_exclusive_group()
    tok.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="a Hugging Face tokenizer folder (save_pretrained) or tokenizer.json (default: byte-level, 257 ids)",
    )
    tok.add_argument(
        "--train-tokenizer",
        choices=("bpe",),
        help="train a byte-level BPE on SRC itself (with --vocab-size) and ship it with the data set",
    )
    prep.add_argument(
        "--vocab-size", type=_positive_int, default=4096, metavar="N", help="--train-tokenizer's vocabulary (4096)"
    )
    prep.add_argument(
        "--eval-fraction",
        type=float,
        default=0.02,
        metavar="F",
        help="share of examples held out for evaluation, never trained on (default 0.02; 0: none)",
    )
    prep.add_argument("--text-field", default="text", metavar="NAME", help="records' text field (default text)")
    prep.add_argument("--label-field", default="label", metavar="NAME", help="records' label field (default label)")
    prep.add_argument(
        "--target-field", default="target", metavar="NAME", help="seq2seq-lm: records' target text (default target)"
    )
    prep.add_argument(
        "--target-len", type=_positive_int, metavar="N", help="seq2seq-lm: target tokens (default --seq-len)"
    )
    prep.add_argument("--image-field", default="image", metavar="NAME", help="records' image field (default image)")
    prep.add_argument(
        "--processor", type=Path, metavar="DIR", help="image-classification: image processor folder (save_pretrained)"
    )
    prep.add_argument(
        "--image-size",
        type=_positive_int,
        default=224,
        metavar="N",
        help="image-classification without --processor: resize to N×N, scale to [-1, 1] (default 224)",
    )
    chat = prep.add_argument_group(
        "chat (supervised fine-tuning)",
        "--chat: each record is a conversation, a messages list ([{role, content}, ...], the OpenAI / Hugging Face "
        "chat format) or a prompt / response pair; it is rendered with the tokenizer's chat template and trained "
        "on the assistant's tokens only (labels -100 elsewhere)",
    )
    chat.add_argument("--chat", action="store_true", help="records are conversations (causal-lm)")
    chat.add_argument(
        "--chat-template",
        type=Path,
        metavar="FILE",
        help="a Jinja chat template file, used instead of (or where there is no) tokenizer's chat_template",
    )
    chat.add_argument("--messages-field", default="messages", metavar="NAME", help="the messages list (messages)")
    chat.add_argument("--prompt-field", default="prompt", metavar="NAME", help="the user's prompt (prompt)")
    chat.add_argument("--response-field", default="response", metavar="NAME", help="the assistant's answer (response)")
    chat.add_argument("--system-field", default="system", metavar="NAME", help="optional system text (system)")
    prep.add_argument("--split", default="train", help="the split of a datasets folder with several (default train)")
    prep.add_argument("--dataset-id", metavar="ID", help="data set id (default: OUT's folder name)")
    prep.add_argument(
        "--max-bytes", type=_positive_int, metavar="N", help="read at most N source bytes (text, JSONL, CSV, Parquet)"
    )
    prep.add_argument(
        "--suffix", action="append", default=[], metavar=".EXT", help="only files ending in .EXT (repeatable)"
    )
    prep.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=run_prepare)

    add = commands.add_parser(
        "add-model",
        help="pack a checkpoint folder into a prepared data set, served as tendril-data://<dataset_id>/model.tar",
        description="Pack MODEL_DIR (what save_pretrained writes: config.json and SafeTensors weights, tokenizer "
        "files allowed; pickle weights are left out, a folder with pickle weights only is refused) into DATASET_DIR "
        "as a tar asset of kind 'model', listed with its sha256 in manifest.json. A job loads it with "
        "[training.model] source = 'tendril-data://<dataset_id>/<name>'. Restart a data node serving DATASET_DIR "
        "to serve it.",
    )
    add.add_argument("dataset_dir", metavar="DATASET_DIR", type=Path, help="a folder written by `tendril data prepare`")
    add.add_argument("model_dir", metavar="MODEL_DIR", type=Path, help="a checkpoint folder (save_pretrained)")
    add.add_argument("--name", default=MODEL_ASSET, help=f"asset file name, ending in .tar (default {MODEL_ASSET})")
    add.add_argument("--force", action="store_true", help="replace a model asset of the same name")
    add.set_defaults(func=run_add_model)

    serve = commands.add_parser(
        "serve",
        help="serve a prepared data set (DataNodeService) and announce it in the gateway registry",
        description="Serve DIR's slices as resumable 1 MiB chunk streams until Ctrl-C / SIGTERM.",
    )
    serve.add_argument("dir", metavar="DIR", type=Path, help="a folder written by `tendril data prepare`")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR", help=f"default {DEFAULT_LISTEN}")
    serve.add_argument(
        "--gateway",
        default="",
        metavar="ADDR[,ADDR...]",
        help="gateway to announce the data set at; several comma-separated: the next one takes over when one fails",
    )
    serve.add_argument("--dataset-id", metavar="ID", help="serve under this id (default: the manifest's)")
    serve.add_argument("--advertise", default="", metavar="ADDR", help="address announced (default: the bound one)")
    serve.add_argument("--registry-ttl", type=float, default=15.0, metavar="SECONDS", help="record TTL (default 15)")
    serve.add_argument("--verify", action="store_true", help="check every slice's sha256 before serving")
    serve.add_argument("--log-level", default="info", help="debug, info, warning, error")
    tls.add_tls_args(serve)
    serve.set_defaults(func=run_serve)


def run_prepare(args: argparse.Namespace) -> int:
    if args.src == STDLIB_SOURCE:
        source = Source(stdlib_corpus())
    else:
        source = Source.open(Path(args.src), args.suffix, split=args.split)
    images = args.task == "image-classification"
    tokenizer = None if images or args.train_tokenizer else load_tokenizer(args.tokenizer)
    template = None
    if args.chat_template is not None:
        try:
            template = args.chat_template.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataNodeError(
                ErrorKind.INVALID_ARGUMENT,
                f"--chat-template {args.chat_template}: cannot read it ({exc}); pass a Jinja template file",
                reason=DatasetReason.BAD_CHAT_TEMPLATE,
            ) from exc
    options = PrepareOptions(
        seq_len=args.seq_len,
        sequences_per_slice=args.sequences_per_slice,
        dataset_id=args.dataset_id,
        max_bytes=args.max_bytes,
        force=args.force,
        progress=not args.no_progress,
        task=args.task,
        eval_fraction=args.eval_fraction,
        text_field=args.text_field,
        label_field=args.label_field,
        target_field=args.target_field,
        target_len=args.target_len,
        image_field=args.image_field,
        image_size=args.image_size,
        processor=args.processor,
        train_bpe_vocab=args.vocab_size if args.train_tokenizer else None,
        chat=args.chat,
        chat_template=template,
        chat_fields=ChatFields(args.messages_field, args.prompt_field, args.response_field, args.system_field),
    )
    start = time.perf_counter()
    manifest = prepare_dataset(source, args.out, tokenizer, options)
    what = (
        f"{manifest.num_labels} labels"
        if images
        else f"{manifest.seq_len} tokens, vocab {manifest.vocab_size} ({manifest.tokenizer})"
    )
    print(
        f"prepared data set {manifest.dataset_id!r} ({manifest.task}) in {args.out}: {len(manifest.slices)} slices, "
        f"{manifest.num_sequences} examples of {what}, held out {manifest.eval_sequences} examples in "
        f"{len(manifest.eval_slices)} eval slices, {manifest.total_bytes} bytes from {manifest.documents} "
        f"documents in {time.perf_counter() - start:.1f}s"
    )
    dropped = manifest.documents - manifest.num_sequences - manifest.eval_sequences
    if args.chat and dropped:
        print(f"left out {dropped} conversations with no assistant token within --seq-len {manifest.seq_len}")
    return 0


def run_add_model(args: argparse.Namespace) -> int:
    entry = add_model(args.dataset_dir, args.model_dir, name=args.name, force=args.force)
    dataset_id = load_manifest(args.dataset_dir).dataset_id
    print(
        f"added model {args.model_dir} to data set {dataset_id!r} as {entry.name} ({entry.size_bytes} bytes, "
        f'sha256 {entry.sha256}); use source = "{DATA_SCHEME}://{dataset_id}/{entry.name}" in [training.model]'
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    gateways = [g.strip() for g in args.gateway.split(",") if g.strip()]
    for flag, value in (
        ("--listen", args.listen),
        *(("--gateway", g) for g in gateways),
        ("--advertise", args.advertise),
    ):
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
