"""The model: a GPT-2 from a transformers config, initialised from the run's seed (no download)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from tendril_diloco.errors import ExecutorError, ExecutorReason

# A tiny GPT-2 that trains on a CPU; the job's "model" object overrides any of these.
TINY: dict[str, Any] = {"n_layer": 2, "n_head": 2, "n_embd": 64}


def build_model(model_config: Mapping[str, Any], seed: int) -> GPT2LMHeadModel:
    """The same θ0 on every worker: the config plus ``torch.manual_seed(seed)`` fixes it."""
    hf_logging.set_verbosity_error()  # NOTE: config warnings about unused kwargs would fill every job log
    kwargs = {**TINY, **model_config}
    for key in ("vocab_size", "n_positions"):
        if not isinstance(kwargs.get(key), int) or kwargs[key] < 1:
            raise ExecutorError(
                f"job config: model.{key} must be a positive integer (the scheduler fills it from the data set "
                f"manifest), got {kwargs.get(key)!r}",
                reason=ExecutorReason.BAD_MODEL_CONFIG,
            )
    # The byte tokenizer's last id is its end-of-text token.
    kwargs.setdefault("bos_token_id", kwargs["vocab_size"] - 1)
    kwargs.setdefault("eos_token_id", kwargs["vocab_size"] - 1)
    try:
        config = GPT2Config(**kwargs)
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)
    except (TypeError, ValueError) as exc:
        raise ExecutorError(
            f"job config: model is not a valid GPT-2 config: {exc}",
            reason=ExecutorReason.BAD_MODEL_CONFIG,
        ) from exc
