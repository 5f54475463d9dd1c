"""The prompts file (JSONL) and how its prompts are batched.

One JSON object per line (blank lines are skipped): ``prompt`` (a non-empty string, required),
``id`` (a string or an integer, unique in the file; default: the line's number), ``meta`` (any
JSON value, copied to the prompt's result), ``system`` (the system message of this prompt when
the job formats prompts as chat) and the sampling knobs ``max_new_tokens``, ``temperature``,
``top_p``, ``top_k``, which override the job's for this prompt. Any other key is refused, so a
misspelt knob is never ignored.

Batches hold consecutive prompts with the same knobs (at most ``batch_size`` of them): results
come out in the order of the file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tendril_inference.config import SAMPLING_KEYS, Sampling, parse_sampling
from tendril_inference.errors import InferenceError, InferenceReason

__all__ = ["LINE_KEYS", "Prompt", "batches", "parse_prompts", "read_prompts"]

LINE_KEYS = frozenset({"prompt", "id", "meta", "system", *SAMPLING_KEYS})


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One line of the prompts file."""

    line: int  # 1-based line number in the file
    id: str | int
    prompt: str
    sampling: Sampling
    system: str | None = None  # None: the job's system message
    meta: Any = None


def _bad(where: str, message: str) -> InferenceError:
    return InferenceError(f"{where}: {message}", reason=InferenceReason.BAD_PROMPTS)


def parse_prompts(lines: Sequence[str], base: Sampling, *, chat: bool, name: str = "prompts") -> list[Prompt]:
    """The prompts of ``lines`` (the file's lines); InferenceError(BAD_PROMPTS) names the first bad line."""
    prompts: list[Prompt] = []
    seen: dict[str | int, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{name} line {number}"
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise _bad(where, f"is not JSON ({exc}); write one JSON object per line") from exc
        if not isinstance(raw, dict):
            raise _bad(where, f'must be a JSON object such as {{"prompt": "..."}}, got {type(raw).__name__}')
        unknown = sorted(set(raw) - LINE_KEYS)
        if unknown:
            raise _bad(where, f"unknown keys {unknown}; a line may have {sorted(LINE_KEYS)} (put your own under meta)")
        prompt = raw.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _bad(where, f"prompt must be a non-empty string, got {prompt!r}"[:300])
        key = raw.get("id", number)
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise _bad(where, f"id must be a string or an integer, got {key!r}"[:300])
        if key in seen:
            raise _bad(where, f"id {key!r} is already the id of line {seen[key]}; ids must be unique"[:300])
        seen[key] = number
        system = raw.get("system")
        if system is not None and not isinstance(system, str):
            raise _bad(where, f"system must be a string, got {system!r}"[:300])
        if system is not None and not chat:
            raise _bad(where, "system is the system message of chat formatting; the job needs chat = true")
        sampling = parse_sampling(raw, base, where=f"{where}: ", reason=InferenceReason.BAD_PROMPTS)
        prompts.append(Prompt(number, key, prompt, sampling, system, raw.get("meta")))
    if not prompts:
        raise InferenceError(
            f'{name} has no prompts; write one {{"prompt": ...}} object per line', reason=InferenceReason.BAD_PROMPTS
        )
    return prompts


def read_prompts(path: Path, base: Sampling, *, chat: bool, name: str = "") -> list[Prompt]:
    """The prompts of the JSONL file ``path`` (UTF-8); InferenceError(BAD_PROMPTS) says what is wrong."""
    name = name or path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InferenceError(
            f"{name} is not UTF-8 text ({exc}); write JSONL in UTF-8", reason=InferenceReason.BAD_PROMPTS
        ) from exc
    except OSError as exc:
        raise InferenceError(f"{name} cannot be read: {exc}", reason=InferenceReason.BAD_PROMPTS) from exc
    return parse_prompts(text.splitlines(), base, chat=chat, name=name)


def batches(prompts: Sequence[Prompt], batch_size: int) -> Iterator[list[Prompt]]:
    """Consecutive prompts with the same knobs, at most ``batch_size`` at a time, in file order."""
    batch: list[Prompt] = []
    for prompt in prompts:
        if batch and (len(batch) == batch_size or prompt.sampling != batch[0].sampling):
            yield batch
            batch = []
        batch.append(prompt)
    if batch:
        yield batch
