"""Held-out evaluation: the mean loss of a model over batches of named slice tensors, plus the
figures people read for its task (perplexity for language models, accuracy for classifiers).

The loss is weighted by what the model predicts in each batch (target tokens for language
models, examples for classifiers), so the figure does not depend on how the held-out split
was cut into batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import torch

from tendril_models.batches import IGNORE_INDEX, accepted_inputs, model_inputs
from tendril_models.spec import DataSpec
from tendril_models.tasks import Task

__all__ = ["EVAL_SEED", "batches_of", "evaluate"]

EVAL_SEED = 0  # masked-LM masking is drawn the same way for every evaluation
PERPLEXITY_CAP = 700.0  # exp(700) is finite: a diverged model reports a large perplexity, never inf


def batches_of(tensors: Mapping[str, torch.Tensor], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Consecutive batches of ``batch_size`` examples of one slice's named tensors."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    count = min((t.shape[0] for t in tensors.values()), default=0)
    for start in range(0, count, batch_size):
        yield {name: t[start : start + batch_size] for name, t in tensors.items()}


def _targets(labels: torch.Tensor, task: Task) -> int:
    """How many predictions the batch's loss averages over."""
    if task.classification and labels.dim() == 1:
        return int(labels.shape[0])
    if task.name == "causal-lm":
        # NOTE: the causal-lm loss shifts labels by one: the first position predicts nothing.
        return int((labels[..., 1:] != IGNORE_INDEX).sum())
    return int((labels != IGNORE_INDEX).sum())


def evaluate(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    task: Task,
    *,
    data: DataSpec | None = None,
) -> dict[str, float]:
    """``eval_loss`` (mean per prediction), ``eval_perplexity`` (language models),
    ``eval_accuracy`` (classification) and ``eval_examples`` over ``batches``.

    ``data`` (the data set summary) gives the padding and mask tokens; masked-LM masking uses a
    generator seeded the same way every time, so that every round is scored on the same task.
    ``eval_loss`` is NaN when the batches hold nothing to predict.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    accepts = accepted_inputs(model)
    generator = torch.Generator().manual_seed(EVAL_SEED)
    tokens = {} if data is None else {"pad_id": data.pad_id, "mask_id": data.mask_id, "vocab_size": data.vocab_size}
    loss_sum = 0.0
    targets = correct = examples = 0
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = model_inputs(batch, task, accepts=accepts, generator=generator, **tokens)
                inputs = {k: v.to(device) for k, v in inputs.items()}
                labels = inputs.get("labels")
                if labels is None:
                    continue
                out = model(**inputs)
                n = _targets(labels, task)
                examples += int(labels.shape[0])
                if n == 0 or out.loss is None:
                    continue
                loss_sum += float(out.loss) * n
                targets += n
                if task.classification:
                    correct += int((out.logits.argmax(dim=-1) == labels).sum())
    finally:
        model.train(was_training)
    loss = loss_sum / targets if targets else math.nan
    metrics = {"eval_loss": loss, "eval_examples": float(examples)}
    if task.language_model:
        metrics["eval_perplexity"] = math.exp(min(loss, PERPLEXITY_CAP)) if math.isfinite(loss) else math.nan
    if task.classification:
        metrics["eval_accuracy"] = correct / targets if targets else math.nan
    return metrics
