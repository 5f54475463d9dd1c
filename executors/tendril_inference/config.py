"""The inference job config (dispatch ``config`` of class inference / name generate), validated.

Keys (docs/INFERENCE.md): ``model`` (a :class:`tendril_models.ModelSpec` of task ``causal-lm``
or ``seq2seq-lm``, usually a ``source`` checkpoint), ``prompts`` (URI of the prompts JSONL) and
optional ``prompts_sha256``, ``tokenizer`` (URI; default: the model's source) and
``tokenizer_sha256``, the sampling knobs ``max_new_tokens``, ``temperature`` (0: greedy),
``top_p``, ``top_k`` (0: off) and ``seed``, ``batch_size``, ``chat`` and ``system`` (format each
prompt with the tokenizer's chat_template), ``dtype`` (``auto``: bf16 on a GPU that has it, else
fp16 on a GPU, fp32 on a CPU) and ``torch_threads``; ``data_node`` is the bridge's (where
``tendril-data://`` URIs are fetched from). Any other key is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from tendril_inference.errors import InferenceError, InferenceReason
from tendril_models import ModelError, ModelSpec

__all__ = ["DTYPES", "GENERATIVE_TASKS", "InferenceConfig", "Sampling", "parse_config", "parse_sampling"]

GENERATIVE_TASKS = ("causal-lm", "seq2seq-lm")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k")
_KEYS = frozenset(
    {
        "model",
        "prompts",
        "prompts_sha256",
        "tokenizer",
        "tokenizer_sha256",
        "seed",
        "batch_size",
        "chat",
        "system",
        "dtype",
        "torch_threads",
        "data_node",
        *SAMPLING_KEYS,
    }
)
MAX_NEW_TOKENS = 1 << 20


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How one prompt's completion is generated (the job's knobs, or a line's overrides of them)."""

    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy (the most likely token each step)
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filter

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``model.generate`` these knobs mean."""
        if self.greedy:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    model: ModelSpec
    prompts: str
    prompts_sha256: str = ""
    tokenizer: str = ""  # "": the model's source
    tokenizer_sha256: str = ""
    sampling: Sampling = dataclasses.field(default_factory=Sampling)
    seed: int = 0
    batch_size: int = 8
    chat: bool = False
    system: str = ""
    dtype: str = "auto"
    torch_threads: int = 0


WHERE = "job config: "


def bad(message: str) -> InferenceError:
    return InferenceError(WHERE + message, reason=InferenceReason.BAD_JOB_CONFIG)


def _number(
    raw: Mapping[str, Any],
    key: str,
    default: Any,
    kind: type,
    where: str = WHERE,
    reason: InferenceReason = InferenceReason.BAD_JOB_CONFIG,
) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InferenceError(f"{where}{key} must be a number, got {value!r}", reason=reason)
    if kind is int:
        if float(value) != int(value):
            raise InferenceError(f"{where}{key} must be a whole number, got {value!r}", reason=reason)
        return int(value)
    return float(value)


def parse_sampling(
    raw: Mapping[str, Any],
    base: Sampling,
    *,
    where: str = WHERE,
    reason: InferenceReason = InferenceReason.BAD_JOB_CONFIG,
) -> Sampling:
    """``base`` with the knobs ``raw`` gives (only SAMPLING_KEYS are read), checked; ``where`` prefixes errors."""
    sampling = Sampling(
        max_new_tokens=_number(raw, "max_new_tokens", base.max_new_tokens, int, where, reason),
        temperature=_number(raw, "temperature", base.temperature, float, where, reason),
        top_p=_number(raw, "top_p", base.top_p, float, where, reason),
        top_k=_number(raw, "top_k", base.top_k, int, where, reason),
    )
    checks = [
        (1 <= sampling.max_new_tokens <= MAX_NEW_TOKENS, f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}"),
        (sampling.temperature >= 0, "temperature must be >= 0 (0: greedy)"),
        (0 < sampling.top_p <= 1, "top_p must be > 0 and <= 1"),
        (sampling.top_k >= 0, "top_k must be >= 0 (0: no top-k filter)"),
    ]
    for ok, message in checks:
        if not ok:
            raise InferenceError(f"{where}{message}", reason=reason)
    return sampling


def _text(raw: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise bad(f"{key} must be {'a non-empty' if required else 'a'} string, got {value!r}")
    return value


def parse_config(raw: Mapping[str, Any]) -> InferenceConfig:
    """InferenceConfig from the dispatch config; InferenceError(BAD_JOB_CONFIG) names the first bad key."""
    if not isinstance(raw, Mapping):
        raise bad("the job config must be an object")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise bad(f"unknown keys {unknown}; the keys are {sorted(_KEYS)}")
    if "model" not in raw:
        raise bad("model is required: {source = URI of a checkpoint} (and task = causal-lm or seq2seq-lm)")
    if "prompts" not in raw:
        raise bad('prompts is required: the URI of a JSONL file, one {"prompt": ...} object per line')
    try:
        model = ModelSpec.from_dict(raw["model"])
    except ModelError as exc:
        raise bad(exc.message) from exc
    if model.task not in GENERATIVE_TASKS:
        raise bad(f"model.task must be one of {', '.join(GENERATIVE_TASKS)} to generate text, got {model.task!r}")
    chat = raw.get("chat", False)
    if not isinstance(chat, bool):
        raise bad(f"chat must be true or false, got {chat!r}")
    dtype = raw.get("dtype", "auto")
    if dtype not in DTYPES:
        raise bad(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    config = InferenceConfig(
        model=model,
        prompts=_text(raw, "prompts", required=True),
        prompts_sha256=_text(raw, "prompts_sha256"),
        tokenizer=_text(raw, "tokenizer"),
        tokenizer_sha256=_text(raw, "tokenizer_sha256"),
        sampling=parse_sampling(raw, Sampling()),
        seed=_number(raw, "seed", 0, int),
        batch_size=_number(raw, "batch_size", 8, int),
        chat=chat,
        system=_text(raw, "system"),
        dtype=str(dtype),
        torch_threads=_number(raw, "torch_threads", 0, int),
    )
    checks = [
        (config.seed >= 0, "seed must be >= 0"),
        (1 <= config.batch_size <= 4096, "batch_size must be between 1 and 4096"),
        (config.torch_threads >= 0, "torch_threads must be >= 0 (0: torch's default)"),
        (not config.system or config.chat, "system is the system message of chat formatting; it needs chat = true"),
        (
            bool(config.tokenizer or model.source),
            "a model built from a config has no tokenizer: give tokenizer (the URI of a tokenizer folder or archive)",
        ),
        (not config.tokenizer_sha256 or bool(config.tokenizer), "tokenizer_sha256 needs tokenizer"),
    ]
    for ok, message in checks:
        if not ok:
            raise bad(message)
    return config
