"""`tendril model generate DIR --prompt TEXT` and `tendril model eval DIR DATASET_DIR`: use a
model a run exported (``<out_dir>/model/``, or any ``save_pretrained`` directory).

* ``generate``: continue a prompt with a causal language model and its tokenizer.
* ``eval``: the held-out loss (and perplexity or accuracy) of the model on a prepared data
  set's held-out split (``eval_slices`` of its manifest.json; ``--split train`` reads the
  training slices instead), the same figures a run writes to metrics.jsonl.

torch and transformers are imported when a command runs. Exit status 1 when the model or the
data set cannot be used (the reason is printed on one line), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
MANIFEST = "manifest.json"
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # transformers' causal LM class names end so
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model")


class ModelCommandError(Exception):
    """What the user must fix, in one line."""


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "model", help="use an exported model: generate text, evaluate on a data set"
    )
    parser.set_defaults(group_parser=parser)
    commands = parser.add_subparsers(title="model commands", metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="continue a prompt with a causal language model",
        description="Load DIR with AutoModelForCausalLM and AutoTokenizer and print the prompt's continuation.",
    )
    generate.add_argument("model_dir", metavar="DIR", help="the model directory (a run's <out_dir>/model)")
    generate.add_argument("--prompt", required=True, help="the text to continue")
    generate.add_argument("--max-new-tokens", type=int, default=50, metavar="N", help="tokens to add (default 50)")
    generate.add_argument(
        "--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: sample at this temperature"
    )
    generate.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    generate.set_defaults(func=run_generate)

    evaluate = commands.add_parser(
        "eval",
        help="held-out loss of a model on a prepared data set",
        description="Evaluate DIR (loaded with the AutoModelFor* class of the data set's task) on the held-out "
        "split of a data set prepared with `tendril data prepare`.",
    )
    evaluate.add_argument("model_dir", metavar="DIR", help="the model directory (a run's <out_dir>/model)")
    evaluate.add_argument("dataset_dir", metavar="DATASET_DIR", help="a prepared data set folder (manifest.json)")
    evaluate.add_argument(
        "--split", choices=("eval", "train"), default="eval", help="held-out slices (default) or the training ones"
    )
    evaluate.add_argument("--batch-size", type=int, default=8, metavar="N", help="examples per forward pass")
    evaluate.add_argument("--max-examples", type=int, default=0, metavar="N", help="at most N examples (0: all)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    evaluate.set_defaults(func=run_eval)


def _quiet() -> None:
    """No weight-loading progress bars or config notes on the terminal: the answer is the output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _check_dir(path: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelCommandError(f"{folder} has no config.json; give a directory written by save_pretrained")
    return folder


def generate_text(model_dir: Path, prompt: str, *, max_new_tokens: int, temperature: float, seed: int) -> str:
    """The prompt and its continuation."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _quiet()
    config = AutoConfig.from_pretrained(model_dir)
    architectures = config.architectures or []
    if architectures and not any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
        raise ModelCommandError(
            f"{model_dir} holds a {', '.join(architectures)}, not a causal language model; "
            "`tendril model generate` continues text with causal LMs only (use `tendril model eval`)"
        )
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise ModelCommandError(
            f"{model_dir} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}); export it from a data set "
            "that carries its tokenizer, or copy the tokenizer's files beside config.json"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ModelCommandError(f"{model_dir} holds no tokenizer AutoTokenizer can load: {exc}") from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    except ValueError as exc:
        raise ModelCommandError(
            f"{model_dir} is a {config.model_type} model that is not a causal language model; "
            "`tendril model generate` continues text with causal LMs only"
        ) from exc
    model.eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    if inputs["input_ids"].shape[1] == 0:
        raise ModelCommandError("the prompt has no tokens; give some text")
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_k=None,
            top_p=None,
            pad_token_id=pad,
        )
    return str(tokenizer.decode(out[0], skip_special_tokens=True))


def evaluate_dir(
    model_dir: Path, dataset_dir: Path, *, split: str, batch_size: int, max_examples: int
) -> dict[str, float]:
    """The eval figures of ``model_dir`` on a split of the data set in ``dataset_dir``."""
    import transformers

    from tendril_models.batches import load_slice
    from tendril_models.errors import ModelError
    from tendril_models.evaluate import batches_of, evaluate
    from tendril_models.spec import DataSpec
    from tendril_models.tasks import get_task

    _quiet()
    try:
        manifest = json.loads((dataset_dir / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ModelCommandError(f"{dataset_dir / MANIFEST} cannot be read: {exc}") from exc
    key = "eval_slices" if split == "eval" else "slices"
    entries = manifest.get(key) or []
    if not entries:
        raise ModelCommandError(
            f"the data set in {dataset_dir} has no held-out split (no eval_slices in its manifest): prepare it "
            "again with --eval-fraction, or pass --split train"
            if split == "eval"
            else f"the data set in {dataset_dir} lists no slices"
        )
    try:
        data = DataSpec.from_manifest(manifest)
        task = get_task(data.task)
        model = getattr(transformers, task.auto_class).from_pretrained(model_dir)
        tensors = []
        examples = 0
        for entry in entries:
            loaded = load_slice(dataset_dir / entry["name"])
            if max_examples:
                loaded = {k: v[: max_examples - examples] for k, v in loaded.items()}
            tensors.append(loaded)
            examples += min(t.shape[0] for t in loaded.values())
            if max_examples and examples >= max_examples:
                break
        batches = (batch for t in tensors for batch in batches_of(t, batch_size))
        metrics = evaluate(model, batches, task, data=data)
    except ModelError as exc:
        raise ModelCommandError(exc.message) from exc
    except (OSError, ValueError) as exc:
        raise ModelCommandError(f"{model_dir} cannot be loaded for task {data.task}: {exc}") from exc
    return {**metrics, "slices": float(len(tensors))}


def run_generate(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        print("tendril model generate: --max-new-tokens must be >= 1", file=sys.stderr)
        return 2
    try:
        text = generate_text(
            _check_dir(args.model_dir),
            args.prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
        )
    except ModelCommandError as exc:
        print(f"tendril model generate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(text)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.max_examples < 0:
        print("tendril model eval: --batch-size must be >= 1 and --max-examples >= 0", file=sys.stderr)
        return 2
    try:
        metrics = evaluate_dir(
            _check_dir(args.model_dir),
            Path(args.dataset_dir).expanduser(),
            split=args.split,
            batch_size=args.batch_size,
            max_examples=args.max_examples,
        )
    except ModelCommandError as exc:
        print(f"tendril model eval: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(metrics))
        return 0
    split = "held-out" if args.split == "eval" else "training"
    figures = "  ".join(
        f"{key} {metrics[key]:.4f}" for key in ("eval_loss", "eval_perplexity", "eval_accuracy") if key in metrics
    )
    print(
        f"{figures}  ({int(metrics['eval_examples'])} examples of the {split} split, {int(metrics['slices'])} slices)"
    )
    return 0
