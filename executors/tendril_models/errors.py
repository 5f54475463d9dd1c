"""The package's one error type and its reasons: what was wrong with a model, a checkpoint or a batch."""

from __future__ import annotations

import enum

__all__ = ["ModelError", "ModelReason"]


class ModelReason(enum.StrEnum):
    """Why a model cannot be built, loaded or fed; a job that meets one fails with its message."""

    BAD_TASK = "BAD_TASK"  # the task is not one of TASK_NAMES
    BAD_MODEL_CONFIG = "BAD_MODEL_CONFIG"  # the model section (spec or config kwargs) breaks a rule
    BAD_DATA_SPEC = "BAD_DATA_SPEC"  # the data set summary (manifest) breaks a rule
    CHECKPOINT_NOT_FOUND = "CHECKPOINT_NOT_FOUND"  # the checkpoint directory or its config.json is missing
    PICKLE_ONLY_CHECKPOINT = "PICKLE_ONLY_CHECKPOINT"  # the checkpoint has weights only as pickle (.bin/.pt)
    BAD_CHECKPOINT = "BAD_CHECKPOINT"  # the checkpoint exists but cannot be loaded for the task
    REMOTE_CODE_REFUSED = "REMOTE_CODE_REFUSED"  # the model needs its own code, and it may not run here
    SOURCE_UNAVAILABLE = "SOURCE_UNAVAILABLE"  # the source cannot be fetched (refused, unreachable, wrong sha256)
    BAD_ARCHIVE = "BAD_ARCHIVE"  # an archive cannot be read, or a member would land outside its folder
    INPUT_MISSING = "INPUT_MISSING"  # a batch lacks a tensor the task needs
    BAD_SLICE = "BAD_SLICE"  # a slice file cannot be read as SafeTensors, or holds no examples
    TOKENIZER_NOT_FOUND = "TOKENIZER_NOT_FOUND"  # the model's tokenizer files are missing (folder, archive or URI)
    BAD_TOKENIZER = "BAD_TOKENIZER"  # the tokenizer files exist but transformers cannot load them
    BAD_FINETUNE_CONFIG = "BAD_FINETUNE_CONFIG"  # the finetune section breaks a rule, or the adapter does not fit


class ModelError(Exception):
    """A model cannot be built, loaded or fed; ``message`` says what to fix, ``reason`` names it."""

    def __init__(self, message: str, *, reason: ModelReason) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def __repr__(self) -> str:
        return f"ModelError({self.message!r}, reason={str(self.reason)!r})"
