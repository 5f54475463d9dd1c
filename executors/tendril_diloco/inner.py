"""The inner optimisation every process of a worker runs: AdamW steps on named-tensor batches."""

from __future__ import annotations

import time
from typing import Any

import torch

from tendril_diloco.config import InnerConfig
from tendril_diloco.distributed import Batch, Group, wrap
from tendril_models import DataSpec, Task
from tendril_models.batches import accepted_inputs, model_inputs


class InnerLoop:
    """AdamW (linear warm-up, gradient clipping at 1.0) on one model, placed by accelerate."""

    def __init__(
        self,
        accelerator: Any,
        model: torch.nn.Module,
        inner: InnerConfig,
        task: Task,
        data: DataSpec,
        group: Group | None = None,
    ) -> None:
        self.accelerator = accelerator
        self.task = task
        self.data = data
        self.accepts = accepted_inputs(model)
        # NOTE: only what trains: a LoRA fine-tune's frozen base keeps no optimiser state.
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=inner.lr, weight_decay=inner.weight_decay)
        warmup = inner.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
        model, self.optimizer, self.schedule = accelerator.prepare(model, optimizer, schedule)
        self.model = wrap(model, group)

    @property
    def plain_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)  # type: ignore[no-any-return]

    def step(self, batch: Batch) -> tuple[float, float]:
        """One inner step on ``batch``: (its loss, seconds)."""
        began = time.perf_counter()
        self.model.train()
        data = self.data
        inputs = model_inputs(
            batch, self.task, accepts=self.accepts, pad_id=data.pad_id, mask_id=data.mask_id, vocab_size=data.vocab_size
        )
        device = self.accelerator.device
        out = self.model(**{name: value.to(device) for name, value in inputs.items()})
        self.accelerator.backward(out.loss)
        self.accelerator.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(out.loss.detach().float().item()), time.perf_counter() - began
