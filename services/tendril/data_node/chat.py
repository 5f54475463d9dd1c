"""Chat and instruction data for supervised fine-tuning (``tendril data prepare --chat``).

A record is a conversation: a ``messages`` list as in the OpenAI / Hugging Face chat format
(``[{"role": "system" | "user" | "assistant" | ..., "content": "..."}, ...]``), or a
``prompt`` / ``response`` pair (and an optional ``system`` text), which is the conversation
system?, user, assistant. Each conversation is rendered with the tokenizer's chat template
(``apply_chat_template``; ``--chat-template FILE`` gives or replaces it) and becomes one
example of ``N`` = ``--seq-len`` tokens: ``input_ids`` (padded with the pad id),
``attention_mask`` and ``labels``, which are the ids of the assistant's turns and -100
everywhere else (system and user turns, the template's role headers, padding), so the loss is
on what the assistant says only.

NOTE: which tokens belong to an assistant turn is found on the rendered text: the turn spans
from the end of the conversation before it rendered with the generation prompt (the assistant
header) to the end of the conversation up to it, and a token belongs to the turn when it starts
inside that span (token offsets of the fast tokenizer). It needs a template that renders a
conversation's beginning the same way whatever follows, which the usual templates do; one
that does not is refused with the record's number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tendril.core.errors import ErrorKind
from tendril.data_node.errors import DataNodeError, DatasetReason
from tendril.data_node.sources import Record
from tendril.data_node.tokenizer import Tokenizer

IGNORE_INDEX = -100  # the label the loss skips
ASSISTANT = "assistant"


@dataclasses.dataclass(frozen=True)
class ChatFields:
    """Where a record keeps its conversation."""

    messages: str = "messages"
    prompt: str = "prompt"
    response: str = "response"
    system: str = "system"


def _bad(message: str, reason: DatasetReason = DatasetReason.BAD_CHAT_RECORD) -> DataNodeError:
    return DataNodeError(ErrorKind.INVALID_ARGUMENT, message, reason=reason)


def conversation(record: Record, position: int, fields: ChatFields) -> list[dict[str, str]]:
    """The record's messages: its messages list, or system? + user prompt + assistant response."""
    values = record.fields
    if record.raw_text:
        raise _bad(
            f"record {position} is a plain text file; --chat reads JSONL, CSV, Parquet or datasets records with "
            f"a {fields.messages!r} list or {fields.prompt!r} / {fields.response!r} fields"
        )
    raw = values.get(fields.messages)
    if raw is None:
        prompt, response = values.get(fields.prompt), values.get(fields.response)
        if prompt is None or response is None:
            raise _bad(
                f"record {position} has neither a {fields.messages!r} list nor {fields.prompt!r} and "
                f"{fields.response!r} fields (its fields are {', '.join(sorted(values)) or '(none)'}); name them with "
                "--messages-field, or --prompt-field and --response-field",
                DatasetReason.FIELD_MISSING,
            )
        raw = []
        system = values.get(fields.system)
        if system:
            raw.append({"role": "system", "content": system})
        raw += [{"role": "user", "content": prompt}, {"role": ASSISTANT, "content": response}]
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
        raise _bad(f"record {position}: {fields.messages!r} must be a non-empty list of messages")
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, Mapping):
            raise _bad(f"record {position}: message {index} is a {type(message).__name__}, not an object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role or not isinstance(content, str):
            raise _bad(
                f"record {position}: message {index} needs a string role and a string content "
                f'(e.g. {{"role": "user", "content": "..."}}), got {dict(message)!r:.200}'
            )
        messages.append({"role": role, "content": content})
    if not any(m["role"] == ASSISTANT for m in messages):
        raise _bad(f"record {position}: the conversation has no assistant message, so nothing to learn from it")
    return messages


class ChatFormatter:
    """Renders conversations with a chat template and tokenizes them with the assistant's tokens as labels."""

    def __init__(self, tokenizer: Tokenizer, template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.fast = tokenizer.as_transformers()
        if template:
            self.fast.chat_template = template
        if not getattr(self.fast, "chat_template", None):
            raise _bad(
                f"the tokenizer ({tokenizer.name}) has no chat_template; give one with --chat-template FILE "
                "(a Jinja template as in a tokenizer_config.json's chat_template), or use a tokenizer that has one",
                DatasetReason.NO_CHAT_TEMPLATE,
            )
        self.dropped = 0  # conversations whose assistant tokens all lay past --seq-len

    def render(self, messages: list[dict[str, str]], *, generation_prompt: bool = False) -> str:
        try:
            text = self.fast.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        except Exception as exc:  # jinja2 raises TemplateError subclasses; a template may raise anything
            raise _bad(
                f"the chat template cannot render the conversation: {exc}", DatasetReason.BAD_CHAT_TEMPLATE
            ) from exc
        return str(text)

    def encode(self, messages: list[dict[str, str]], position: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, labels) of one conversation, int32, not truncated."""
        full = self.render(messages)
        spans = []
        for index, message in enumerate(messages):
            if message["role"] != ASSISTANT:
                continue
            start = self.render(messages[:index], generation_prompt=True) if index else ""
            end = self.render(messages[: index + 1])
            if not (full.startswith(start) and full.startswith(end) and len(start) <= len(end)):
                raise _bad(
                    f"record {position}: the chat template renders the beginning of the conversation differently "
                    "depending on what follows, so the assistant's turns cannot be told apart; use a template that "
                    "renders each turn independently (--chat-template FILE)",
                    DatasetReason.BAD_CHAT_TEMPLATE,
                )
            spans.append((len(start), len(end)))
        encoding = self.fast.backend_tokenizer.encode(full, add_special_tokens=False)
        ids = np.asarray(encoding.ids, dtype=np.int32)
        starts = np.asarray([offset[0] for offset in encoding.offsets], dtype=np.int64)
        learn = np.zeros(len(ids), dtype=bool)
        for begin, end in spans:
            learn |= (starts >= begin) & (starts < end)
        labels = np.where(learn, ids, IGNORE_INDEX).astype(np.int32)
        return ids, labels

    def example(
        self, messages: list[dict[str, str]], position: int, seq_len: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(input_ids, attention_mask, labels) of ``seq_len`` tokens; None when truncation left no assistant token."""
        ids, labels = self.encode(messages, position)
        ids, labels = ids[:seq_len], labels[:seq_len]
        # NOTE: the causal-lm loss predicts token t+1 from t, so a label at position 0 teaches nothing.
        if not (labels[1:] != IGNORE_INDEX).any():
            self.dropped += 1
            return None
        length = len(ids)
        out_ids = np.full(seq_len, self.tokenizer.pad_id, dtype=np.int32)
        out_ids[:length] = ids
        mask = np.zeros(seq_len, dtype=np.int8)
        mask[:length] = 1
        out_labels = np.full(seq_len, IGNORE_INDEX, dtype=np.int32)
        out_labels[:length] = labels
        return out_ids, mask, out_labels

    def save(self, folder: Any) -> None:
        """The tokenizer with the chat template used, as a save_pretrained folder (the data set's asset)."""
        self.fast.save_pretrained(str(folder))
