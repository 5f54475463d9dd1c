"""The model of a job: its source checkpoint fetched through the bridge, then built by tendril_models.

θ0 is the same on every worker: a config-built model comes from ``torch.manual_seed(seed)``, a
checkpoint from its weights (new heads again from the seed), a LoRA adapter (``finetune``)
from the seed too. Model code shipped with a
checkpoint runs only when the job asks for it (``model.trust_remote_code``) and the worker
allows it (``job.allow_remote_code``, passed as env TENDRIL_ALLOW_REMOTE_CODE).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tendril_diloco.config import TrainConfig
from tendril_models import ModelError, ModelReason
from tendril_models.build import POSITION_KEYS, build_model, remote_code_allowed
from tendril_models.source import fetch_checkpoint
from tendril_sdk import BridgeClient

if TYPE_CHECKING:
    from transformers import PreTrainedModel


async def load_model(
    config: TrainConfig, bridge: BridgeClient, *, allow_remote_code: bool | None = None
) -> tuple[PreTrainedModel, Path | None]:
    """Fetch the job's checkpoint (if it names a source) and build the model, in fp32 on the CPU.

    Returns the model and the checkpoint's folder (None: built from the config).
    """
    allowed = remote_code_allowed() if allow_remote_code is None else allow_remote_code
    spec = config.model
    if spec.trust_remote_code and not allowed:
        # NOTE: refused before anything is downloaded.
        raise ModelError(
            "the job asks for trust_remote_code (model code shipped with the checkpoint), and this worker does not "
            "allow it; its operator can set job.allow_remote_code = true in worker.toml",
            reason=ModelReason.REMOTE_CODE_REFUSED,
        )
    folder = await fetch_checkpoint(bridge, spec, trust_remote_code=spec.trust_remote_code and allowed)
    model = await asyncio.to_thread(
        build_model,
        spec,
        config.data_spec,
        seed=config.seed,
        checkpoint_dir=folder,
        allow_remote_code=allowed,
        finetune=config.finetune,
    )
    return model, folder


def replica_config(config: TrainConfig, mixed_precision: str, folder: Path | None) -> dict[str, Any]:
    """What a replica process needs to build the same model and inner optimiser (JSON)."""
    return {
        "model": config.model.to_dict(),
        "data": config.data_spec.to_dict(),
        "seed": config.seed,
        "checkpoint_dir": str(folder) if folder is not None else "",
        "inner": dataclasses.asdict(config.inner),
        "mixed_precision": mixed_precision,
        "torch_threads": config.torch_threads,
        "allow_remote_code": remote_code_allowed(),
        "finetune": config.finetune.to_dict() if config.finetune is not None else None,
    }


def context_length(model: PreTrainedModel) -> int | None:
    """The most tokens a sequence may have (None: the model has no such bound, e.g. T5)."""
    for key in POSITION_KEYS:
        limit = getattr(model.config, key, None)
        if isinstance(limit, int) and limit > 0:
            return limit
    return None
