"""The executor's one error type and its reasons: a message for the job's log, then a non-zero exit."""

from __future__ import annotations

import enum

__all__ = ["ExecutorError", "ExecutorReason"]


class ExecutorReason(enum.StrEnum):
    """Why training cannot go on; the job's log names it (no RPC answers it: the executor exits)."""

    BAD_JOB_CONFIG = "BAD_JOB_CONFIG"  # the job's config breaks a rule (the message names the key)
    BAD_MODEL_CONFIG = "BAD_MODEL_CONFIG"  # the job's model or data section breaks a rule of tendril_models
    BAD_SLICE = "BAD_SLICE"  # a data slice cannot be read or lacks a tensor the task needs (it is skipped)
    NO_READABLE_SLICE = "NO_READABLE_SLICE"  # slice after slice could not be read: training cannot go on
    SEQ_TOO_LONG = "SEQ_TOO_LONG"  # a slice's sequences are longer than the model takes
    BAD_TENSOR_FILE = "BAD_TENSOR_FILE"  # a parameter or update file cannot be read as SafeTensors
    TENSOR_NAMES = "TENSOR_NAMES"  # two tensor files (or a file and the model) name different tensors
    PARAM_SHAPE = "PARAM_SHAPE"  # a parameter's shape differs from the model's
    UPDATE_SHAPE = "UPDATE_SHAPE"  # an outer update tensor's shape differs from the model's
    MIXED_PRECISION = "MIXED_PRECISION"  # the configured mixed precision is not available on this machine
    LOSS_NOT_FINITE = "LOSS_NOT_FINITE"  # the training loss became NaN or Inf
    REPLICAS_FAILED = "REPLICAS_FAILED"  # the processes of a several-GPU worker did not start or join
    FRAGMENT_ORDER = "FRAGMENT_ORDER"  # streaming sync: a fragment pushed twice, or an update came with no push out


class ExecutorError(Exception):
    """Training cannot go on; ``message`` says what was wrong and what to do, ``reason`` names it."""

    def __init__(self, message: str, *, reason: ExecutorReason) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def __repr__(self) -> str:
        return f"ExecutorError({self.message!r}, reason={str(self.reason)!r})"
