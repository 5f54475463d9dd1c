"""One rank of the WAN section's data-parallel baseline: gloo all_reduce of the gradients every step.

Run by :mod:`bench.wan` inside a worker's namespace of the lab (``python bench/wan_dp.py ...``,
one process per worker host; rank 0's host address is the rendezvous). Each rank trains the
DiLoCo workers' model (built by ``tendril_models`` from the same spec and seed) on its own
share of the data set's slices, ``batch_size`` sequences a step, with the DiLoCo inner optimiser
(AdamW, linear warm-up, clipping at 1.0) on the gradient averaged over every rank. Rank 0 then
scores θ on the held-out split as the eval job does. Each rank writes a JSON line to ``--result``:
its compute and all_reduce seconds, the bytes its host sent on eth0 (``/proc/net/dev`` of its
namespace) and, on rank 0, the held-out loss.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def tx_bytes(interface: str = "eth0") -> int:
    """Bytes this network namespace sent on ``interface`` so far."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == interface:
            return int(counters.split()[8])
    raise RuntimeError(f"no interface {interface} in /proc/net/dev")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--master", required=True, help="HOST:PORT of rank 0's rendezvous")
    parser.add_argument("--data", type=Path, required=True, help="the prepared data set (manifest.json)")
    parser.add_argument("--model", required=True, help="the run's [training.model] as JSON (task, config)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--warmup-steps", type=int, required=True)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    import torch
    import torch.distributed as dist

    from tendril_models.batches import accepted_inputs, load_slice, model_inputs
    from tendril_models.build import build_model
    from tendril_models.evaluate import batches_of, evaluate
    from tendril_models.spec import DataSpec, ModelSpec
    from tendril_models.tasks import get_task

    # NOTE: one thread, as the DiLoCo workers train (job.toml torch_threads = 1).
    torch.set_num_threads(1)
    manifest = json.loads((args.data / "manifest.json").read_text())
    data = DataSpec.from_manifest(manifest)
    spec = ModelSpec.from_dict(json.loads(args.model))
    task = get_task(spec.task)
    model = build_model(spec, data, seed=args.seed)
    accepts = accepted_inputs(model)
    tokens: dict[str, Any] = {"pad_id": data.pad_id, "mask_id": data.mask_id, "vocab_size": data.vocab_size}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    warmup = args.warmup_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))

    dist.init_process_group(
        "gloo", init_method=f"tcp://{args.master}", rank=args.rank, world_size=args.world, timeout=_timeout()
    )
    slices = [s["name"] for s in manifest["slices"]][args.rank :: args.world]

    def batches() -> Any:
        while True:
            for name in slices:
                yield from batches_of(load_slice(args.data / name), args.batch_size)

    source = batches()
    flat = torch.zeros(sum(p.numel() for p in params))
    dist.barrier()
    sent_before = tx_bytes()
    compute = reduce = 0.0
    losses: list[float] = []
    began = time.perf_counter()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        model.train()
        out = model(**model_inputs(next(source), task, accepts=accepts, **tokens))
        out.loss.backward()
        # NOTE: one all_reduce of every gradient in one flat buffer, as DDP's buckets would send it.
        offset = 0
        for p in params:
            n = p.numel()
            flat[offset : offset + n].copy_(p.grad.reshape(-1) if p.grad is not None else torch.zeros(n))
            offset += n
        t1 = time.perf_counter()
        dist.all_reduce(flat)
        t2 = time.perf_counter()
        flat /= args.world
        offset = 0
        for p in params:
            n = p.numel()
            if p.grad is not None:
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
        compute += (t1 - t0) + (time.perf_counter() - t2)
        reduce += t2 - t1
    dist.barrier()
    total = time.perf_counter() - began
    sent = tx_bytes() - sent_before
    result: dict[str, Any] = {
        "rank": args.rank,
        "steps": args.steps,
        "compute_seconds": compute,
        "all_reduce_seconds": reduce,
        "seconds": total,
        "tx_bytes": sent,
        "gradient_bytes": 4 * flat.numel(),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }
    if args.rank == 0:
        held_out: list[dict[str, Any]] = []
        for ref in manifest.get("eval_slices", []):
            held_out.extend(batches_of(load_slice(args.data / ref["name"]), 8))
        result |= evaluate(model, held_out, task, data=data)
    dist.destroy_process_group()
    args.result.write_text(json.dumps(result) + "\n")
    return 0


def _timeout() -> Any:
    import datetime

    return datetime.timedelta(seconds=300)


if __name__ == "__main__":
    raise SystemExit(main())
