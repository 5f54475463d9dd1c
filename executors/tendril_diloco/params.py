"""θ as named fp32 CPU tensors: snapshots, the pseudo-gradient Δ, applying the outer update.

Names are the model's ``named_parameters()`` — tied weights (GPT-2's lm_head and wte) appear
once, so the SafeTensors files never hold a shared tensor twice. θ is the parameters that
train (:func:`tendril_models.finetune.trainable_parameters`): every one of a model trained
whole, only the adapter's of a LoRA fine-tune, whose frozen base never travels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_models.finetune import trainable_parameters

Params = dict[str, torch.Tensor]


def snapshot(model: torch.nn.Module) -> Params:
    """A detached fp32 CPU copy of every trainable parameter."""
    return {name: p.detach().to("cpu", torch.float32).clone() for name, p in trainable_parameters(model).items()}


def compute_delta(start: Params, current: Params) -> Params:
    """Δ = θ_round_start − θ_local (the pseudo-gradient the parameter server averages)."""
    _same_names(start, current, "the round-start parameters", "the local parameters")
    return {name: (start[name] - current[name]).contiguous() for name in start}


def apply_update(start: Params, update: Params, *, in_place: bool = False) -> Params:
    """θ_new = θ_round_start + u (u is the parameter server's outer update).

    ``in_place``: add u into ``start``'s own tensors and return them (for a caller that drops
    θ_round_start for θ_new, as the trainer does each round). Every shape is checked before the
    first tensor changes, so a bad update leaves ``start`` as it was.
    """
    _same_names(start, update, "the model", "the outer update")
    for name, value in start.items():
        u = update[name]
        if u.shape != value.shape:
            raise ExecutorError(
                f"outer update tensor {name} has shape {tuple(u.shape)}, the model has {tuple(value.shape)}",
                reason=ExecutorReason.UPDATE_SHAPE,
            )
    # NOTE: in place saves a model-sized allocation a round, and its page faults: 0.18 s of θ + u at
    # 400 MB in `python -m bench --only sync` went to a new tensor per round.
    if in_place:
        return {name: value.add_(update[name].to(torch.float32)) for name, value in start.items()}
    return {name: value + update[name].to(torch.float32) for name, value in start.items()}


def load_into(model: torch.nn.Module, params: Params) -> None:
    """Copy θ into the model's parameters in place (the optimizer keeps its state)."""
    current = trainable_parameters(model)
    _same_names(params, current, "the parameter file", "the model")
    with torch.no_grad():
        for name, p in current.items():
            value = params[name]
            if value.shape != p.shape:
                raise ExecutorError(
                    f"parameter {name} has shape {tuple(value.shape)}, the model has {tuple(p.shape)}",
                    reason=ExecutorReason.PARAM_SHAPE,
                )
            p.copy_(value.to(p.device, p.dtype))


def save_params(params: Params, path: Path) -> None:
    """Write fp32 SafeTensors atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in params.items()}, str(tmp))
    os.replace(tmp, path)


def load_params(path: Path) -> Params:
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError, not an OSError
        raise ExecutorError(f"cannot read tensors from {path}: {exc}", reason=ExecutorReason.BAD_TENSOR_FILE) from exc
    return {k: v.to(torch.float32) for k, v in tensors.items()}


def _same_names(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], a_name: str, b_name: str) -> None:
    if a.keys() != b.keys():
        missing = sorted(set(a) - set(b))[:3]
        extra = sorted(set(b) - set(a))[:3]
        raise ExecutorError(
            f"{a_name} and {b_name} name different tensors (only in the first: {missing}, only in the second: {extra})",
            reason=ExecutorReason.TENSOR_NAMES,
        )
