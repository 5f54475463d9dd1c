"""``python -m tendril_diloco.replica``: rank 1..n-1 of a worker that trains on several GPUs.

Started by rank 0 (the executor JobService started; see :mod:`tendril_diloco.distributed`),
never by hand. It builds the same model and inner optimiser, then obeys rank 0: ``step``
(an inner step on the batch it was handed), ``load`` (take rank 0's θ), ``stop``. It talks to
no bridge; its output goes to the job's log with rank 0's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from tendril_diloco.config import InnerConfig
from tendril_diloco.distributed import Group
from tendril_diloco.inner import InnerLoop
from tendril_models import DataSpec, ModelSpec, get_task
from tendril_models.batches import batch_size
from tendril_models.build import build_model
from tendril_models.finetune import FinetuneSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tendril_diloco.replica", description=__doc__)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--address", required=True, help="rank 0's rendezvous host:port")
    parser.add_argument("--config", type=Path, required=True, help="the replica config rank 0 wrote")
    args = parser.parse_args(argv)
    from accelerate import Accelerator

    raw = json.loads(args.config.read_text())
    if raw.get("torch_threads"):
        torch.set_num_threads(int(raw["torch_threads"]))
    accelerator = Accelerator(mixed_precision=raw["mixed_precision"])
    group = Group(args.rank, args.world, args.address, cuda=torch.cuda.is_available())
    try:
        group.receive()  # ("model",): rank 0 has its model (and the checkpoint is on disk)
        spec, data = ModelSpec.from_dict(raw["model"]), DataSpec.from_dict(raw["data"])
        folder = Path(raw["checkpoint_dir"]) if raw.get("checkpoint_dir") else None
        finetune = FinetuneSpec.from_dict(raw["finetune"]) if raw.get("finetune") else None
        model = build_model(
            spec,
            data,
            seed=int(raw["seed"]),
            checkpoint_dir=folder,
            allow_remote_code=bool(raw["allow_remote_code"]),
            finetune=finetune,
        )
        inner = InnerLoop(accelerator, model, InnerConfig(**raw["inner"]), get_task(spec.task), data, group)
        while True:
            message = group.receive()
            if message[0] == "step":
                loss, _ = inner.step(message[1])
                group.mean_loss(loss, batch_size(message[1]))
            elif message[0] == "load":
                group.broadcast_params(inner.plain_model)
            else:
                return 0
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
