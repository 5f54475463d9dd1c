"""Several processes for one worker: one per GPU of the job's lease, DDP inner steps, one Δ.

The executor JobService starts is rank 0: it alone talks to the bridge (slices, reports, θ,
the pseudo-gradient). It starts ranks 1..n-1 (``python -m tendril_diloco.replica``) in its
own process group, so that whatever stops the job stops them too. Each process sees one GPU
(``CUDA_VISIBLE_DEVICES`` narrowed to its device; NCCL between them) or, on a CPU, none
(gloo). Rank 0 hands every replica its batch of each inner step over a gloo control group;
the model is wrapped in DistributedDataParallel, so the gradients are averaged and every
rank's θ stays rank 0's, and when θ changes (the run's θ fetched, an outer update applied)
rank 0 broadcasts it. The worker still sends one pseudo-gradient a round, weighted by the
samples of all its ranks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from tendril_diloco.errors import ExecutorError, ExecutorReason

CUDA_ENV = "CUDA_VISIBLE_DEVICES"
JOIN_TIMEOUT = timedelta(seconds=120)
STOP_SECONDS = 10.0

Batch = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How many processes train for this worker, and on which devices."""

    world: int = 1
    devices: tuple[str, ...] = ()  # one GPU per rank; () on a CPU

    @property
    def cuda(self) -> bool:
        return bool(self.devices)


def plan(processes: int, env: Mapping[str, str] | None = None) -> Plan:
    """``processes`` (0: one per GPU the job's lease gave it, 1 on a CPU) from env CUDA_VISIBLE_DEVICES.

    NOTE: decided from the variable alone, before anything asks torch about CUDA: once CUDA is
    initialised, narrowing the devices a process sees no longer works.
    """
    env = os.environ if env is None else env
    devices = tuple(d.strip() for d in env.get(CUDA_ENV, "").split(",") if d.strip())
    if not devices or not torch.backends.cuda.is_built():
        return Plan(max(1, processes))
    world = min(processes or len(devices), len(devices))
    return Plan(world, devices[:world])


def narrow_devices(plan: Plan, rank: int) -> None:
    """Let this process see its own GPU only (call before CUDA is used)."""
    if plan.cuda:
        os.environ[CUDA_ENV] = plan.devices[rank]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Group:
    """The processes of one worker, seen from one of them."""

    def __init__(self, rank: int, world: int, address: str, cuda: bool) -> None:
        self.rank, self.world, self.cuda = rank, world, cuda
        # NOTE: the rendezvous is explicit (tcp://, rank, size) rather than through RANK/
        # WORLD_SIZE variables, so that accelerate keeps managing one process (device, mixed
        # precision) and the DDP wrapping stays the same on GPUs and CPUs.
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            init_method=f"tcp://{address}",
            rank=rank,
            world_size=world,
            timeout=JOIN_TIMEOUT,
        )
        self.control = dist.new_group(backend="gloo")  # batches and commands travel as objects here
        self.replicas: list[subprocess.Popen[bytes]] = []

    @classmethod
    def start(cls, plan: Plan, work_dir: Path, replica_config: Mapping[str, Any]) -> Group:
        """Rank 0: start the replicas and meet them."""
        address = f"127.0.0.1:{_free_port()}"
        path = work_dir / "params" / "replica.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(replica_config))
        replicas = []
        for rank in range(1, plan.world):
            env = dict(os.environ)
            if plan.cuda:
                env[CUDA_ENV] = plan.devices[rank]
            args = ["--rank", str(rank), "--world", str(plan.world), "--address", address, "--config", str(path)]
            replicas.append(subprocess.Popen([sys.executable, "-m", "tendril_diloco.replica", *args], env=env))
        try:
            group = cls(0, plan.world, address, plan.cuda)
        except Exception as exc:
            for proc in replicas:
                proc.kill()
            raise ExecutorError(
                f"the {plan.world - 1} replica process(es) of this worker did not join: {exc}",
                reason=ExecutorReason.REPLICAS_FAILED,
            ) from exc
        group.replicas = replicas
        return group

    # -- rank 0 --------------------------------------------------------------------------

    def send(self, messages: Sequence[Any]) -> Any:
        """Rank 0: ``messages[r]`` to rank r; returns rank 0's own."""
        out: list[Any] = [None]
        dist.scatter_object_list(out, list(messages), src=0, group=self.control)
        return out[0]

    def command(self, *message: Any) -> None:
        self.send([message] * self.world)

    def stop(self, *, clean: bool) -> None:
        """Rank 0: end the replicas (``clean``: tell them; else they may be stuck in a collective: kill)."""
        if clean:
            try:
                self.command("stop")
            except Exception:
                clean = False
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self.replicas:
            if not clean:
                proc.kill()
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        dist.destroy_process_group()

    # -- every rank ----------------------------------------------------------------------

    def receive(self) -> Any:
        """A replica: the next message from rank 0."""
        out: list[Any] = [None]
        dist.scatter_object_list(out, None, src=0, group=self.control)
        return out[0]

    def broadcast_params(self, model: torch.nn.Module) -> None:
        """Every rank takes rank 0's θ (after rank 0 loaded a new one): the parameters that train
        (a frozen base is the same everywhere)."""
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    dist.broadcast(p.data, src=0)

    def mean_loss(self, loss: float, samples: int) -> tuple[float, int]:
        """The sample-weighted loss of a step over every rank, and the samples of all of them."""
        totals = torch.tensor([loss * samples, float(samples)], dtype=torch.float64)
        dist.all_reduce(totals, group=self.control)
        return float(totals[0] / totals[1]), int(totals[1])


def wrap(model: torch.nn.Module, group: Group | None) -> torch.nn.Module:
    """DistributedDataParallel over the group (rank 0's θ becomes every rank's); as is without one."""
    if group is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[0] if group.cuda else None)
