"""Building a model from a config (θ0 from the run's seed) or loading it from a checkpoint folder.

Config route: ``AutoConfig.for_model(model_type, **kwargs)``, with the vocabulary, context,
image size and labels filled from the data set where the kwargs leave them out, then the
task's ``AutoModelFor*.from_config`` under ``torch.manual_seed(seed)``: every worker builds the
same θ0. Source route: the task's ``AutoModelFor*.from_pretrained(folder)`` with SafeTensors
weights only (a pickle checkpoint can run code when it is loaded), new heads seeded the same
way. Model code shipped with a checkpoint (``trust_remote_code``) runs only when the job asks
for it and the worker allows it (``job.allow_remote_code``, env TENDRIL_ALLOW_REMOTE_CODE).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tendril_models.errors import ModelError, ModelReason
from tendril_models.finetune import FinetuneSpec, add_adapter
from tendril_models.spec import DataSpec, ModelSpec
from tendril_models.tasks import Task, get_task
from tendril_sdk.job import REMOTE_CODE_ENV

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

__all__ = [
    "PICKLE_WEIGHTS",
    "POSITION_KEYS",
    "REMOTE_CODE_ENV",
    "SAFETENSORS_WEIGHTS",
    "build_model",
    "remote_code_allowed",
    "remote_code_trusted",
]

SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")
# Config attributes that bound a model's context, by model family.
POSITION_KEYS = ("n_positions", "max_position_embeddings")


def remote_code_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether this worker lets a checkpoint's own model code run (env TENDRIL_ALLOW_REMOTE_CODE=1)."""
    value = (os.environ if env is None else env).get(REMOTE_CODE_ENV, "")
    return value.strip().lower() in ("1", "true", "yes")


def _auto_class(task: Task) -> Any:
    import transformers

    return getattr(transformers, task.auto_class)


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    # NOTE: config warnings about unused kwargs and "newly initialized" heads would fill every job log.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _trust(spec: ModelSpec, allow_remote_code: bool) -> bool:
    if spec.trust_remote_code and not allow_remote_code:
        raise ModelError(
            "the job asks for trust_remote_code (model code shipped with the checkpoint), and this worker does "
            "not allow it; its operator can set job.allow_remote_code = true in worker.toml, or use a model "
            "transformers knows",
            reason=ModelReason.REMOTE_CODE_REFUSED,
        )
    return spec.trust_remote_code


def remote_code_trusted(spec: ModelSpec, allow_remote_code: bool) -> bool:
    """Whether the model's own code runs: the job asks for it and the worker allows it.

    ModelError(REMOTE_CODE_REFUSED) when the job asks for it and the worker does not allow it.
    """
    return _trust(spec, allow_remote_code)


def _image_shape(data: DataSpec) -> tuple[int, int] | None:
    """(channels, size) of the data set's pixel_values ([C, H, W] per example), if it has them."""
    info = data.tensors.get("pixel_values")
    shape = list(info.get("shape", [])) if info else []
    if len(shape) == 3 and shape[0] > 0 and shape[1] > 0:
        return int(shape[0]), int(shape[1])
    return None


def _fill(config: PretrainedConfig, given: Mapping[str, Any], task: Task, data: DataSpec) -> dict[str, Any]:
    """Kwargs the data set decides where ``given`` leaves them out (only those ``config`` has)."""
    fill: dict[str, Any] = {}

    def want(key: str, value: Any) -> None:
        if key not in given and hasattr(config, key):
            fill[key] = value

    if data.vocab_size > 0:
        want("vocab_size", data.vocab_size)
    if data.seq_len > 0 and not any(key in given for key in POSITION_KEYS):
        # NOTE: one key only: configs alias them (GPT-2's max_position_embeddings is n_positions).
        for key in POSITION_KEYS:
            if hasattr(config, key):
                fill[key] = data.seq_len
                break
    if data.eot_id >= 0:
        want("bos_token_id", data.eot_id)
        want("eos_token_id", data.eot_id)
    if data.pad_id >= 0:
        want("pad_token_id", data.pad_id)
    # NOTE: encoder-decoder models start decoding from this id (T5: its pad id); some configs
    # (T5's, in transformers 5) do not carry it at all, and the forward pass needs it.
    if (
        task.name == "seq2seq-lm"
        and "decoder_start_token_id" not in given
        and getattr(config, "decoder_start_token_id", None) is None
    ):
        pad = fill.get("pad_token_id", getattr(config, "pad_token_id", None))
        fill["decoder_start_token_id"] = pad if isinstance(pad, int) and pad >= 0 else 0
    image = _image_shape(data)
    if image is not None:
        want("num_channels", image[0])
        want("image_size", image[1])
    if task.classification and data.num_labels > 0 and "num_labels" not in given and "id2label" not in given:
        names = data.label_names if len(data.label_names) == data.num_labels else ()
        fill["id2label"] = {i: (names[i] if names else f"LABEL_{i}") for i in range(data.num_labels)}
        fill["label2id"] = {v: k for k, v in fill["id2label"].items()}
    return fill


def _from_config(spec: ModelSpec, task: Task, data: DataSpec, seed: int, trust: bool) -> PreTrainedModel:
    import torch
    from transformers import AutoConfig

    kwargs = dict(spec.model_config)
    model_type = kwargs.pop("model_type", None)
    if not isinstance(model_type, str) or not model_type:
        raise ModelError("model: config.model_type is required (e.g. gpt2, llama)", reason=ModelReason.BAD_MODEL_CONFIG)
    try:
        probe = AutoConfig.for_model(model_type, **kwargs)
        config = AutoConfig.for_model(model_type, **kwargs, **_fill(probe, kwargs, task, data))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(
            f"model: config {{model_type = {model_type!r}, ...}} is not a valid transformers config: {exc}",
            reason=ModelReason.BAD_MODEL_CONFIG,
        ) from exc
    torch.manual_seed(seed)
    try:
        return _auto_class(task).from_config(config, trust_remote_code=trust)  # type: ignore[no-any-return]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelError(
            f"model: a {model_type} model cannot do task {task.name} ({task.auto_class}): {exc}",
            reason=ModelReason.BAD_MODEL_CONFIG,
        ) from exc


def _checked_checkpoint(folder: Path, spec: ModelSpec, trust: bool) -> dict[str, Any]:
    """config.json of a checkpoint folder, once its weights are known to be SafeTensors."""
    where = spec.source or str(folder)
    config_file = folder / "config.json"
    if not folder.is_dir() or not config_file.is_file():
        raise ModelError(
            f"checkpoint {where} has no config.json; give a folder written by save_pretrained (or an archive of one)",
            reason=ModelReason.CHECKPOINT_NOT_FOUND,
        )
    if not any((folder / name).is_file() for name in SAFETENSORS_WEIGHTS):
        pickles = [name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
        if pickles or any(folder.glob("*.bin")):
            raise ModelError(
                f"checkpoint {where} has pickle weights only ({', '.join(pickles) or '*.bin'}); Tendril loads "
                "SafeTensors only (a pickle can run code when loaded): load the model once where you trust "
                "the file and save it with save_pretrained(dir), which writes model.safetensors",
                reason=ModelReason.PICKLE_ONLY_CHECKPOINT,
            )
        raise ModelError(
            f"checkpoint {where} has no weights ({' or '.join(SAFETENSORS_WEIGHTS)})",
            reason=ModelReason.CHECKPOINT_NOT_FOUND,
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"checkpoint {where}: config.json is not JSON: {exc}", reason=ModelReason.BAD_CHECKPOINT
        ) from exc
    if not isinstance(config, dict):
        raise ModelError(f"checkpoint {where}: config.json is not an object", reason=ModelReason.BAD_CHECKPOINT)
    if config.get("auto_map") and not trust:
        raise ModelError(
            f"checkpoint {where} needs its own model code (config.json has auto_map); set "
            "training.model.trust_remote_code = true if you trust it (the worker must allow it too: "
            "job.allow_remote_code)",
            reason=ModelReason.REMOTE_CODE_REFUSED,
        )
    return config


def _from_checkpoint(
    spec: ModelSpec, task: Task, data: DataSpec, seed: int, folder: Path, trust: bool
) -> PreTrainedModel:
    import torch

    saved = _checked_checkpoint(folder, spec, trust)
    extra: dict[str, Any] = {}
    if (
        task.classification
        and data.num_labels > 0
        and saved.get("num_labels", len(saved.get("id2label") or {})) != (data.num_labels)
    ):
        # NOTE: fine-tuning a checkpoint on other labels: a new head of the data set's size.
        names = data.label_names if len(data.label_names) == data.num_labels else ()
        extra["id2label"] = {i: (names[i] if names else f"LABEL_{i}") for i in range(data.num_labels)}
        extra["label2id"] = {v: k for k, v in extra["id2label"].items()}
        extra["ignore_mismatched_sizes"] = True
    torch.manual_seed(seed)  # heads the checkpoint lacks start the same on every worker
    try:
        model = _auto_class(task).from_pretrained(
            str(folder),
            use_safetensors=True,
            trust_remote_code=trust,
            local_files_only=True,
            torch_dtype=torch.float32,
            **extra,
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(
            f"checkpoint {spec.source or folder} cannot be loaded as {task.auto_class} (task {task.name}): "
            f"{str(exc)[:500]}",
            reason=ModelReason.BAD_CHECKPOINT,
        ) from exc
    return model  # type: ignore[no-any-return]


def _check_fits(model: PreTrainedModel, data: DataSpec, spec: ModelSpec) -> None:
    """The data set's ids and sequences fit the model (else an index error deep in a forward pass)."""
    config = model.config
    vocab = getattr(config, "vocab_size", None)
    if data.vocab_size > 0 and isinstance(vocab, int) and "input_ids" in data.tensors and data.vocab_size > vocab:
        raise ModelError(
            f"the data set's tokenizer has {data.vocab_size} ids, the model embeds {vocab}; prepare the data with "
            "the model's tokenizer (tendril data prepare --tokenizer DIR) or give the model a vocab_size of at least "
            f"{data.vocab_size}",
            reason=ModelReason.BAD_MODEL_CONFIG,
        )
    for key in POSITION_KEYS:
        limit = getattr(config, key, None)
        if isinstance(limit, int) and 0 < limit < data.seq_len:
            hint = f"model.config.{key}" if not spec.source else "a data set prepared with a shorter --seq-len"
            raise ModelError(
                f"the data set's sequences have {data.seq_len} tokens, the model takes at most {limit} ({key}); "
                f"use {hint}",
                reason=ModelReason.BAD_MODEL_CONFIG,
            )


def build_model(
    spec: ModelSpec,
    data: DataSpec,
    *,
    seed: int,
    checkpoint_dir: Path | None = None,
    allow_remote_code: bool = False,
    finetune: FinetuneSpec | None = None,
) -> PreTrainedModel:
    """The model of ``spec`` for ``data``, in fp32 on the CPU, the same on every worker for the same seed.

    ``checkpoint_dir``: the source checkpoint, already fetched and unpacked (see
    ``tendril_models.source``); required when ``spec.source`` is set. ``finetune``: a LoRA
    adapter is put on the model (a ``peft.PeftModel``, its base frozen; see
    :mod:`tendril_models.finetune`).
    """
    task = get_task(spec.task)
    # NOTE: a data set serves any task whose inputs it has (a causal-lm text set trains a masked
    # LM too), so the tensors decide, not the task it was prepared for.
    missing = [name for name in task.inputs if name not in data.tensors]
    if missing:
        raise ModelError(
            f"task {task.name} needs the slice tensors {list(task.inputs)}; the data set (prepared for "
            f"{data.task}) has no {missing}: prepare it with --task {task.name}",
            reason=ModelReason.INPUT_MISSING,
        )
    _quiet()
    trust = _trust(spec, allow_remote_code)
    if spec.source:
        if checkpoint_dir is None:
            raise ModelError(
                f"model source {spec.source} must be fetched before the model is built",
                reason=ModelReason.BAD_MODEL_CONFIG,
            )
        model = _from_checkpoint(spec, task, data, seed, checkpoint_dir, trust)
    else:
        model = _from_config(spec, task, data, seed, trust)
    _check_fits(model, data, spec)
    if finetune is not None:
        model = add_adapter(model, finetune, task.name, seed=seed, base=spec.source)
    return model
