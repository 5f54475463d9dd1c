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

from tendril_models.batches import model_inputs
from tendril_models.tasks import Task

IGNORE_INDEX = -100  # labels the transformers losses skip (padding, unmasked positions)
EVAL_SEED = 0  # random masking (masked-lm) is the same for every round's evaluation


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


def evaluate(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], task: Task) -> dict[str, float]:
    """``eval_loss`` (mean per prediction), ``eval_perplexity`` (language models),
    ``eval_accuracy`` (classification) and ``eval_examples`` over ``batches``.

    ``eval_loss`` is NaN when the batches hold nothing to predict.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    targets = correct = examples = 0
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(EVAL_SEED)
            for batch in batches:
                inputs = {k: v.to(device) for k, v in model_inputs(batch, task).items()}
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
        # NOTE: capped so that a diverged model reports a large number, never inf (JSON-safe).
        metrics["eval_perplexity"] = math.exp(min(loss, 700.0)) if math.isfinite(loss) else math.nan
    if task.classification:
        metrics["eval_accuracy"] = correct / targets if targets else math.nan
    return metrics
