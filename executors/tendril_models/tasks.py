"""The task catalogue: which ``AutoModelFor*`` class a task uses and which slice tensors it needs."""

from __future__ import annotations

import dataclasses

from tendril_models.errors import ModelError, ModelReason

__all__ = ["TASKS", "TASK_NAMES", "Task", "get_task"]


@dataclasses.dataclass(frozen=True)
class Task:
    """One kind of model and the named tensors a slice must hold to train it."""

    name: str
    auto_class: str  # the transformers class that builds / loads it, e.g. "AutoModelForCausalLM"
    inputs: tuple[str, ...]  # tensors a slice must have
    language_model: bool  # perplexity is reported for these
    classification: bool  # accuracy is reported for these
    # slice tensors passed to the model when the slice has them (beside `inputs`)
    optional: tuple[str, ...] = ()


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        # NOTE: a chat data set (tendril data prepare --chat) carries labels: the prompt masked with -100.
        Task("causal-lm", "AutoModelForCausalLM", ("input_ids",), True, False, ("attention_mask", "labels")),
        Task("masked-lm", "AutoModelForMaskedLM", ("input_ids",), True, False, ("attention_mask", "labels")),
        Task(
            "seq2seq-lm",
            "AutoModelForSeq2SeqLM",
            ("input_ids", "labels"),
            True,
            False,
            ("attention_mask", "decoder_attention_mask"),
        ),
        Task(
            "sequence-classification",
            "AutoModelForSequenceClassification",
            ("input_ids", "labels"),
            False,
            True,
            ("attention_mask", "token_type_ids"),
        ),
        Task("image-classification", "AutoModelForImageClassification", ("pixel_values", "labels"), False, True),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; a ModelError(BAD_TASK) names the accepted ones."""
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise ModelError(
            f"model task {name!r} is not known; use one of {', '.join(TASK_NAMES)}", reason=ModelReason.BAD_TASK
        )
    return task
