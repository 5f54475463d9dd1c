"""The inference executor's one error type and its reasons: a message for error.txt, then exit 1."""

from __future__ import annotations

import enum

__all__ = ["InferenceError", "InferenceReason"]


class InferenceReason(enum.StrEnum):
    """Why an inference job cannot run; its FAILED reason names it (no RPC answers it: the executor exits)."""

    BAD_JOB_CONFIG = "BAD_JOB_CONFIG"  # the job's config breaks a rule (the message names the key)
    BAD_PROMPTS = "BAD_PROMPTS"  # the prompts file is not JSONL of prompt objects (the message names the line)
    PROMPTS_UNAVAILABLE = "PROMPTS_UNAVAILABLE"  # the prompts URI cannot be fetched
    PROMPT_TOO_LONG = "PROMPT_TOO_LONG"  # a prompt plus max_new_tokens is longer than the model's context
    NO_CHAT_TEMPLATE = "NO_CHAT_TEMPLATE"  # chat formatting was asked for and the tokenizer has no chat_template
    DTYPE_UNAVAILABLE = "DTYPE_UNAVAILABLE"  # the configured dtype cannot run on this device


class InferenceError(Exception):
    """Inference cannot go on; ``message`` says what was wrong and what to do, ``reason`` names it."""

    def __init__(self, message: str, *, reason: InferenceReason) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def __repr__(self) -> str:
        return f"InferenceError({self.message!r}, reason={str(self.reason)!r})"
