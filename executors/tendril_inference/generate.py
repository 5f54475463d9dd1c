"""Batched generation with a transformers model and its tokenizer (no bridge here).

Decoder-only models get their prompts padded on the left (generation continues every row from
its last real token); encoder-decoder models (T5) on the right, and their output is the decoder's
sequence after its start token. A completion ends with the first end-of-sequence token (counted
in ``completion_tokens``, left out of the text) or after ``max_new_tokens``.

The random draws of batch ``i`` come from ``torch.manual_seed(batch_seed(seed, i))``: the same
prompts file, knobs and seed give the same completions on the same device and library versions.
A ``threading.Event`` set from outside stops a batch at its next token (SIGTERM).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tendril_inference.config import Sampling
from tendril_inference.errors import InferenceError, InferenceReason
from tendril_inference.prompts import Prompt
from tendril_models.build import POSITION_KEYS

__all__ = [
    "Completion",
    "Generator",
    "batch_seed",
    "context_limit",
    "pick_device",
    "pick_dtype",
]

CUDA_ENV = "CUDA_VISIBLE_DEVICES"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(env: Mapping[str, str] | None = None) -> str:
    """``cuda`` when the job's lease gave it a GPU (CUDA_VISIBLE_DEVICES) and torch sees it, else ``cpu``.

    NOTE: decided from the variable first, as the trainer does: unset or empty means the lease
    has no GPU, even on a host that has some.
    """
    env = os.environ if env is None else env
    devices = [d for d in env.get(CUDA_ENV, "").split(",") if d.strip()]
    return "cuda" if devices and torch.cuda.is_available() else "cpu"


def pick_dtype(requested: str, device: str) -> torch.dtype:
    """The weights' dtype: ``auto`` is bf16 on a GPU that has it, fp16 on other GPUs, fp32 on a CPU."""
    if requested == "auto":
        if device != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if requested == "float16" and device != "cuda":
        raise InferenceError(
            "dtype float16 runs on a GPU only, and this job has none; use auto, float32 or bfloat16",
            reason=InferenceReason.DTYPE_UNAVAILABLE,
        )
    if requested == "bfloat16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise InferenceError(
            "dtype bfloat16 is not supported by this GPU; use auto, float16 or float32",
            reason=InferenceReason.DTYPE_UNAVAILABLE,
        )
    return _DTYPES[requested]


def batch_seed(seed: int, index: int) -> int:
    """The torch seed of batch ``index`` of a job seeded ``seed``."""
    return (seed * 1_000_003 + index) % (1 << 63)


def context_limit(model: Any) -> int | None:
    """The most tokens a decoder-only model's sequence may have (None: no such bound, or encoder-decoder)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return None
    for key in POSITION_KEYS:
        limit = getattr(model.config, key, None)
        if isinstance(limit, int) and limit > 0:
            return limit
    return None


@dataclasses.dataclass(frozen=True)
class Completion:
    text: str
    tokens: int


class _StopOnEvent:
    """A stopping criterion that ends generation for every row once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list | tuple) else [value])]


class Generator:
    """A model and its tokenizer, ready to generate batches of prompts."""

    def __init__(self, model: Any, tokenizer: Any, *, device: str, stop: threading.Event | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.stop = stop or threading.Event()
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        generation = getattr(model, "generation_config", None)
        self.eos_ids = set(_ids(getattr(generation, "eos_token_id", None)) or _ids(tokenizer.eos_token_id))
        pad = tokenizer.pad_token_id
        for candidate in (
            tokenizer.eos_token_id,
            getattr(generation, "pad_token_id", None),
            getattr(model.config, "pad_token_id", None),
            next(iter(sorted(self.eos_ids)), None),
        ):
            if pad is None and candidate is not None:
                pad = _ids(candidate)[0]
        self.pad_id = int(pad) if pad is not None else 0

    # -- prompts to token ids ---------------------------------------------------------------

    def encode(self, prompt: Prompt, *, chat: bool, system: str) -> list[int]:
        """The token ids of ``prompt`` (formatted with the tokenizer's chat_template when ``chat``)."""
        if not chat:
            return list(self.tokenizer(prompt.prompt)["input_ids"])
        if not getattr(self.tokenizer, "chat_template", None):
            raise InferenceError(
                "chat = true needs a tokenizer with a chat_template (tokenizer_config.json or chat_template.jinja); "
                "this one has none: set chat = false, or give a tokenizer that has one",
                reason=InferenceReason.NO_CHAT_TEMPLATE,
            )
        said = prompt.system if prompt.system is not None else system
        messages = [{"role": "system", "content": said}] if said else []
        messages.append({"role": "user", "content": prompt.prompt})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # NOTE: the template writes the special tokens (BOS, role markers) itself.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def check_fits(self, prompt: Prompt, ids: Sequence[int], where: str) -> None:
        """PROMPT_TOO_LONG when the prompt and its new tokens do not fit the model's context."""
        if not ids:
            raise InferenceError(f"{where}: the prompt has no tokens", reason=InferenceReason.BAD_PROMPTS)
        limit = context_limit(self.model)
        wanted = len(ids) + prompt.sampling.max_new_tokens
        if limit is not None and wanted > limit:
            raise InferenceError(
                f"{where}: the prompt has {len(ids)} tokens and max_new_tokens is {prompt.sampling.max_new_tokens}; "
                f"together {wanted}, more than the {limit} the model takes: shorten the prompt or lower max_new_tokens",
                reason=InferenceReason.PROMPT_TOO_LONG,
            )

    # -- one batch --------------------------------------------------------------------------

    def _pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            at = slice(width - len(row), width) if not self.encoder_decoder else slice(0, len(row))
            ids[i, at] = torch.tensor(row, dtype=torch.long)
            mask[i, at] = 1
        return ids.to(self.device), mask.to(self.device)

    def _completion(self, tokens: list[int]) -> Completion:
        end = next((i + 1 for i, t in enumerate(tokens) if t in self.eos_ids), len(tokens))
        kept = tokens[:end]
        text = self.tokenizer.decode([t for t in kept if t not in self.eos_ids], skip_special_tokens=True)
        return Completion(text, len(kept))

    def run(self, rows: Sequence[Sequence[int]], sampling: Sampling, *, seed: int) -> list[Completion] | None:
        """The completions of ``rows`` (token ids of prompts sharing ``sampling``); None when stopped."""
        from transformers import StoppingCriteriaList

        input_ids, attention_mask = self._pad(rows)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([_StopOnEvent(self.stop)]),
                **sampling.generate_kwargs(),
            )
        if self.stop.is_set():
            return None
        new = out[:, 1:] if self.encoder_decoder else out[:, input_ids.shape[1] :]
        return [self._completion(row) for row in new.tolist()]


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the seconds it took."""
    began = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - began
