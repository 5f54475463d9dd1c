"""Hugging Face models for Tendril: the task catalogue, building or loading a model, feeding
named slice tensors to it, held-out evaluation, export.

Depends on torch + transformers (the ``train`` extra) and ``tendril_sdk`` only; services import
it lazily (inside functions), so that a service process does not load torch when it starts.
"""

from tendril_models.errors import ModelError, ModelReason
from tendril_models.spec import DataSpec, ModelSpec
from tendril_models.tasks import TASK_NAMES, Task, get_task

__all__ = ["TASK_NAMES", "DataSpec", "ModelError", "ModelReason", "ModelSpec", "Task", "get_task"]
