"""Fine-tuning with LoRA adapters (``peft``): what the job config's ``finetune`` object says,
putting the adapter on a model, and which tensors are θ.

``FinetuneSpec`` travels in the training and eval job configs (JSON) as ``finetune``:
``method`` (``"lora"``), ``r``, ``alpha``, ``dropout``, ``target_modules`` (module names,
``"all-linear"``, or empty: peft's default for the model's architecture, else
``"all-linear"``), ``bias`` (``"none"``, ``"all"``, ``"lora_only"``) and ``merge`` (the
scheduler also exports the merged model). The base model is the run's checkpoint; its weights
are frozen and never travel after the initial load: θ of a fine-tuning run is the trainable
parameters only (:func:`trainable_parameters`), the adapter's (and, for a classification task,
the new head that peft keeps trainable as ``modules_to_save``).

peft and torch are imported inside the functions: the spec is read by the scheduler too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tendril_models.errors import ModelError, ModelReason

if TYPE_CHECKING:
    import torch

__all__ = [
    "ALL_LINEAR",
    "BIASES",
    "METHODS",
    "FinetuneSpec",
    "add_adapter",
    "is_adapter_model",
    "trainable_parameters",
]

METHODS = ("lora",)
ALL_LINEAR = "all-linear"
BIASES = ("none", "all", "lora_only")
_KEYS = frozenset({"method", "r", "alpha", "dropout", "target_modules", "bias", "merge"})
# The peft task type of each Tendril task (None: a plain PeftModel, as for a masked LM).
PEFT_TASK_TYPES: Mapping[str, str | None] = {
    "causal-lm": "CAUSAL_LM",
    "seq2seq-lm": "SEQ_2_SEQ_LM",
    "sequence-classification": "SEQ_CLS",
    "masked-lm": None,
    "image-classification": None,
}


def _bad(message: str) -> ModelError:
    return ModelError(f"finetune: {message}", reason=ModelReason.BAD_FINETUNE_CONFIG)


@dataclasses.dataclass(frozen=True)
class FinetuneSpec:
    """A LoRA adapter on the run's checkpoint (peft ``LoraConfig``)."""

    method: str = "lora"
    r: int = 8  # the adapter's rank
    alpha: float = 16.0  # scaling: the adapter's output is multiplied by alpha / r
    dropout: float = 0.05  # dropout on the adapter's input
    target_modules: tuple[str, ...] | str = ()  # module names, "all-linear", or (): the architecture's default
    bias: str = "none"  # which biases train too: none, all, lora_only
    merge: bool = False  # the scheduler exports the merged model beside the adapter

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FinetuneSpec:
        """A checked spec from a job config's ``finetune`` object; ModelError(BAD_FINETUNE_CONFIG) names the bad key."""
        if not isinstance(raw, Mapping):
            raise _bad(f"must be an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise _bad(f"unknown keys {unknown}; the keys are {sorted(_KEYS)}")
        method = raw.get("method", "lora")
        if method not in METHODS:
            raise _bad(f"method must be one of {list(METHODS)}, got {method!r}")
        r = raw.get("r", 8)
        if isinstance(r, float) and r.is_integer():
            r = int(r)  # NOTE: a config that travelled as a protobuf Struct has only floats
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise _bad(f"r (the adapter's rank) must be a whole number >= 1, got {r!r}")
        alpha, dropout = raw.get("alpha", 16.0), raw.get("dropout", 0.05)
        for key, value in (("alpha", alpha), ("dropout", dropout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise _bad(f"{key} must be a number, got {value!r}")
        if alpha <= 0:
            raise _bad(f"alpha must be > 0, got {alpha!r}")
        if not 0 <= dropout < 1:
            raise _bad(f"dropout must be at least 0 and below 1, got {dropout!r}")
        targets = raw.get("target_modules", ())
        if isinstance(targets, str):
            if targets != ALL_LINEAR:
                raise _bad(
                    f"target_modules must be a list of module names or {ALL_LINEAR!r}, got {targets!r} "
                    f'(one module: ["{targets}"])'
                )
        elif not isinstance(targets, list | tuple) or not all(isinstance(t, str) and t for t in targets):
            raise _bad(f"target_modules must be a list of module names or {ALL_LINEAR!r}, got {targets!r}")
        else:
            targets = tuple(targets)
        bias = raw.get("bias", "none")
        if bias not in BIASES:
            raise _bad(f"bias must be one of {list(BIASES)}, got {bias!r}")
        merge = raw.get("merge", False)
        if not isinstance(merge, bool):
            raise _bad(f"merge must be true or false, got {merge!r}")
        return cls(
            method=method,
            r=r,
            alpha=float(alpha),
            dropout=float(dropout),
            target_modules=targets,
            bias=bias,
            merge=merge,
        )

    def to_dict(self) -> dict[str, Any]:
        targets = self.target_modules
        return {
            "method": self.method,
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": targets if isinstance(targets, str) else list(targets),
            "bias": self.bias,
            "merge": self.merge,
        }


def _targets(spec: FinetuneSpec, model: Any) -> list[str] | str:
    """The modules the adapter wraps: the spec's, else peft's default for the architecture, else all linear layers."""
    if spec.target_modules:
        return spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = str(getattr(model.config, "model_type", ""))
    default = DEFAULTS.get(model_type)
    return list(default) if default else ALL_LINEAR


def add_adapter(model: Any, spec: FinetuneSpec, task: str, *, seed: int, base: str = "") -> Any:
    """``model`` (its weights frozen) wrapped with a new LoRA adapter: a ``peft.PeftModel``.

    The adapter starts the same on every worker for the same ``seed`` (LoRA's B is zero, so the
    wrapped model computes what the base does). ``base`` is recorded as the adapter config's
    ``base_model_name_or_path`` (the run's source URI).
    """
    import torch

    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ModelError(
            "fine-tuning with LoRA needs the `peft` package: pip install 'tendril[train]'",
            reason=ModelReason.BAD_FINETUNE_CONFIG,
        ) from exc
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=_targets(spec, model),
        bias=spec.bias,
        task_type=PEFT_TASK_TYPES.get(task),
    )
    torch.manual_seed(seed)
    try:
        wrapped = get_peft_model(model, config)
    except (ValueError, TypeError, KeyError) as exc:
        raise _bad(
            f"cannot put a LoRA adapter on this {getattr(model.config, 'model_type', '')} model: {str(exc)[:400]} "
            f'(name its modules in training.finetune.target_modules, or use "{ALL_LINEAR}")'
        ) from exc
    if base:
        wrapped.peft_config["default"].base_model_name_or_path = base
    return wrapped


def is_adapter_model(model: Any) -> bool:
    """Whether ``model`` carries a peft adapter."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """θ of a run: the parameters that train, by ``named_parameters()`` name.

    For a model trained whole that is every parameter; for a model with an adapter, the
    adapter's (the frozen base weights are not θ: they never travel).
    """
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
