"""A trained model as a directory people load with ``AutoModelFor<Task>.from_pretrained``:
config.json + model.safetensors (``save_pretrained``), plus the tokenizer or image processor
the data set was prepared with. A model with a LoRA adapter (a ``peft.PeftModel``) is exported
as its adapter: adapter_config.json + adapter_model.safetensors, which
``PeftModel.from_pretrained(base, folder)`` loads."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from tendril_models.errors import ModelError, ModelReason
from tendril_models.finetune import is_adapter_model, trainable_parameters

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
BYTE_EOT = "<|endoftext|>"  # id 256 of the byte tokenizer
# NOTE: a tokenizer or processor directory holds only these kinds of files; anything else in
# the data set's asset (a README, a stray checkpoint) is not copied beside the model.
ASSET_SUFFIXES = (".json", ".txt", ".model", ".vocab", ".merges", ".tiktoken", ".jinja")  # .jinja: a chat template


def load_theta(model: torch.nn.Module, path: Path) -> None:
    """Copy θ (a SafeTensors file of ``named_parameters()``, as the parameter server keeps it)
    into ``model``; the tensor names must be the model's trainable parameters (all of them, or
    an adapter's: see :func:`tendril_models.finetune.trainable_parameters`)."""
    try:
        theta = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ModelError(f"cannot read parameters from {path}: {exc}", reason=ModelReason.BAD_MODEL_CONFIG) from exc
    params = trainable_parameters(model)
    if theta.keys() != params.keys():
        missing = sorted(set(params) - set(theta))[:3]
        extra = sorted(set(theta) - set(params))[:3]
        raise ModelError(
            f"the parameters in {path.name} do not fit the model (missing: {missing}, unknown: {extra}); "
            "the model spec must be the run's",
            reason=ModelReason.BAD_MODEL_CONFIG,
        )
    with torch.no_grad():
        for name, p in params.items():
            value = theta[name]
            if value.shape != p.shape:
                raise ModelError(
                    f"parameter {name} has shape {tuple(value.shape)} in {path.name}, the model has {tuple(p.shape)}",
                    reason=ModelReason.BAD_MODEL_CONFIG,
                )
            p.copy_(value.to(p.device, p.dtype))


def _byte_chars() -> dict[int, str]:
    """Byte -> the printable character byte-level BPE (GPT-2's) writes it as."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def write_byte_tokenizer(folder: Path) -> Path:
    """A tokenizer.json of Tendril's byte tokenizer (``tendril data prepare`` without a
    tokenizer): ids 0–255 are the bytes, 256 is ``<|endoftext|>``; returns ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    chars = _byte_chars()
    tokenizer = Tokenizer(models.BPE(vocab={chars[b]: b for b in range(256)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([BYTE_EOT])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / TOKENIZER_JSON))
    return folder


def _special_tokens(tokenizer_file: Path, token_ids: Mapping[str, int]) -> dict[str, str]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    found = {}
    for role, token_id in token_ids.items():
        token = tok.id_to_token(token_id) if token_id >= 0 else None
        if token is not None:
            found[role] = token
    return found


def _copy_assets(assets_dir: Path, out_dir: Path, token_ids: Mapping[str, int]) -> None:
    """The tokenizer / processor files; a bare tokenizer.json gets the config that makes
    ``AutoTokenizer.from_pretrained`` load it (PreTrainedTokenizerFast)."""
    for item in sorted(assets_dir.iterdir()):
        if item.is_file() and item.suffix in ASSET_SUFFIXES and item.name not in ("config.json",):
            shutil.copy2(item, out_dir / item.name)
    tokenizer_file = out_dir / TOKENIZER_JSON
    if tokenizer_file.is_file() and not (out_dir / TOKENIZER_CONFIG).exists():
        from transformers import PreTrainedTokenizerFast

        special = _special_tokens(tokenizer_file, token_ids)
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), **special)
        tokenizer.save_pretrained(str(out_dir))


def export(
    model: PreTrainedModel,
    out_dir: Path,
    *,
    assets_dir: Path | None,
    eos_token_id: int = -1,
    pad_token_id: int = -1,
) -> Path:
    """Write ``model`` (``save_pretrained``: config.json + model.safetensors) and the files of
    ``assets_dir`` (the data set's tokenizer or image processor) to ``out_dir``, replacing it
    whole: a reader sees the old directory or the new one, never a mix.

    ``eos_token_id`` / ``pad_token_id`` (the data set's, -1: none) name the special tokens of a
    bare tokenizer.json and go into the generation config of a causal LM.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        generation = getattr(model, "generation_config", None)
        if generation is not None:
            if eos_token_id >= 0:
                generation.eos_token_id = eos_token_id
            if pad_token_id >= 0:
                generation.pad_token_id = pad_token_id
            elif eos_token_id >= 0:
                generation.pad_token_id = eos_token_id
        # NOTE: a model with a LoRA adapter saves the adapter (adapter_config.json +
        # adapter_model.safetensors); its embeddings are the base's (never resized), and peft would
        # otherwise look for the base's config at base_model_name_or_path (the run's source URI).
        extra = {"save_embedding_layers": False} if is_adapter_model(model) else {}
        model.save_pretrained(str(tmp), safe_serialization=True, **extra)
        if assets_dir is not None:
            ids = {"eos_token": eos_token_id, "pad_token": pad_token_id}
            _copy_assets(Path(assets_dir), tmp, {k: v for k, v in ids.items() if v >= 0})
        os.chmod(tmp, 0o755)
        old = out_dir.with_name(f".{out_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
