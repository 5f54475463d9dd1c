"""Slices to model inputs: every named tensor of a slice file, cut into batches and fed by name.

A slice file holds the data set's tensors (``input_ids``, ``attention_mask``, ``labels``,
``pixel_values``, …), first dimension = examples. ``model_inputs`` turns one batch of them into
the model's keyword arguments: ids and labels as int64, masks as int64, pixels as float32; for
causal LMs the labels are the input ids with padding set to -100 (the model shifts them), or
the slice's own ``labels`` (a chat data set: -100 on everything but the assistant's tokens); for
masked LMs without ``labels`` 15 % of the tokens are masked here.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tendril_models.errors import ModelError, ModelReason
from tendril_models.tasks import Task

if TYPE_CHECKING:
    import torch

__all__ = ["IGNORE_INDEX", "MASK_FRACTION", "accepted_inputs", "batch_size", "load_slice", "model_inputs"]

IGNORE_INDEX = -100  # the label transformers' losses skip
MASK_FRACTION = 0.15
_INT_INPUTS = ("input_ids", "labels", "token_type_ids", "decoder_input_ids")
_MASKS = ("attention_mask", "decoder_attention_mask")


def load_slice(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a slice file; ModelError(BAD_SLICE) when it cannot be read or its tensors disagree."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError, not an OSError
        raise ModelError(f"slice {path.name} is not readable: {exc}", reason=ModelReason.BAD_SLICE) from exc
    if not tensors:
        raise ModelError(f"slice {path.name} holds no tensors", reason=ModelReason.BAD_SLICE)
    sizes = {name: (int(t.shape[0]) if t.dim() else -1) for name, t in tensors.items()}
    if len(set(sizes.values())) != 1 or next(iter(sizes.values())) <= 0:
        raise ModelError(
            f"slice {path.name}: every tensor needs the same non-zero number of examples (first dimension), "
            f"got {sizes}",
            reason=ModelReason.BAD_SLICE,
        )
    return tensors


def batch_size(batch: Mapping[str, torch.Tensor]) -> int:
    """Examples in a batch (the first dimension of its tensors)."""
    return int(next(iter(batch.values())).shape[0])


def accepted_inputs(model: torch.nn.Module) -> frozenset[str]:
    """Keyword arguments the model's forward takes (a slice tensor it does not take is not passed)."""
    return frozenset(inspect.signature(model.forward).parameters)


def _mask_tokens(
    ids: torch.Tensor,
    attention: torch.Tensor | None,
    *,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of masked language modelling: MASK_FRACTION of the real tokens to predict."""
    import torch

    chosen = torch.rand(ids.shape, generator=generator) < MASK_FRACTION
    if attention is not None:
        chosen &= attention.bool()
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    if mask_id >= 0:
        replacement = torch.full_like(ids, mask_id)
    else:
        # NOTE: without a mask token (a data set that names none) the chosen tokens are replaced
        # by random ones, the corruption BERT applies to a tenth of them anyway.
        replacement = torch.randint(0, max(1, vocab_size), ids.shape, generator=generator, dtype=ids.dtype)
    return torch.where(chosen, replacement, ids), labels


def model_inputs(
    batch: Mapping[str, torch.Tensor],
    task: Task,
    *,
    accepts: Collection[str] | None = None,
    pad_id: int = -1,
    mask_id: int = -1,
    vocab_size: int = 0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The model's keyword arguments for one batch of slice tensors (on the batch's device).

    ``accepts``: the forward's keyword arguments (see :func:`accepted_inputs`); optional
    tensors it does not name are left out. ``pad_id`` marks padding in seq2seq labels;
    ``mask_id``/``vocab_size``/``generator`` drive masked-LM masking when the slice has no labels.
    ModelError(INPUT_MISSING) names a tensor the task needs and the batch lacks.
    """
    import torch

    missing = [name for name in task.inputs if name not in batch]
    if missing:
        raise ModelError(
            f"task {task.name} needs the slice tensors {list(task.inputs)}; the slice has {sorted(batch)}, "
            f"not {missing}",
            reason=ModelReason.INPUT_MISSING,
        )
    out: dict[str, torch.Tensor] = {}
    for name in (*task.inputs, *task.optional):
        if name not in batch or (accepts is not None and name not in accepts and name not in task.inputs):
            continue
        value = batch[name]
        if name in _INT_INPUTS or name in _MASKS:
            value = value.to(torch.int64)
        elif name == "pixel_values":
            value = value.to(torch.float32)
        out[name] = value
    if task.classification and out["labels"].dim() > 1:
        out["labels"] = out["labels"].reshape(out["labels"].shape[0])
    if task.name == "causal-lm":
        # NOTE: only token labels (one per input id) are a causal LM's: a data set prepared for
        # another task (a class label, a seq2seq target) trains it on its input ids.
        own = out.pop("labels", None)
        labels = (own if own is not None and own.shape == out["input_ids"].shape else out["input_ids"]).clone()
        if "attention_mask" in out:
            labels[out["attention_mask"] == 0] = IGNORE_INDEX
        out["labels"] = labels
    elif task.name == "seq2seq-lm":
        labels = out["labels"].clone()
        if "decoder_attention_mask" in out:
            labels[out["decoder_attention_mask"] == 0] = IGNORE_INDEX
        elif pad_id >= 0:
            labels[labels == pad_id] = IGNORE_INDEX
        out["labels"] = labels
    elif task.name == "masked-lm" and "labels" not in out:
        out["input_ids"], out["labels"] = _mask_tokens(
            out["input_ids"], out.get("attention_mask"), mask_id=mask_id, vocab_size=vocab_size, generator=generator
        )
    return out
