"""Which of the worker's GPUs a job sees: ``CUDA_VISIBLE_DEVICES`` from its lease (no gRPC here).

A lease holds a count of whole GPUs; the JobService turns the count into devices when the
lease's first job starts: the first ones no other live lease uses. Jobs of the same lease see
the same devices, a job whose lease has no GPU sees none (``CUDA_VISIBLE_DEVICES=""``), so a
CPU job on a GPU worker never takes memory on a GPU someone else leased. The LeaseService's
ledger keeps the counts within the worker's GPUs; the devices are the worker's own
``CUDA_VISIBLE_DEVICES`` when it has one (an operator who gave the worker GPUs 2 and 3), else
0..N-1 for the N GPUs of ``[resources] gpu`` (negative: detected through NVML).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

CUDA_ENV = "CUDA_VISIBLE_DEVICES"


def worker_devices(configured: int, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The GPU devices this worker may hand out."""
    env = os.environ if env is None else env
    inherited = env.get(CUDA_ENV)
    if inherited is not None:
        devices = tuple(d.strip() for d in inherited.split(",") if d.strip())
        return devices if configured < 0 else devices[:configured]
    if configured < 0:
        from tendril.core.resources import detect_gpus

        configured = len(detect_gpus()[0])
    return tuple(str(i) for i in range(configured))


def assign(
    lease_id: str, count: int, devices: tuple[str, ...], held: Iterable[tuple[str, tuple[str, ...]]]
) -> tuple[str, ...]:
    """The devices of a job of ``lease_id``, which leases ``count`` GPUs; ``held``: (lease, devices) of live jobs."""
    if count <= 0:
        return ()
    taken: set[str] = set()
    for other, used in held:
        if other == lease_id and used:
            return used  # the lease's other jobs already hold its devices
        taken.update(used)
    free = [d for d in devices if d not in taken]
    # NOTE: the ledger keeps leased GPUs within the worker's, so fewer free devices than leased
    # means this JobService lost track (a job re-adopted after a restart keeps the devices it was
    # started with, unknown here): the job then shares devices rather than failing.
    shared = [d for d in devices if d in taken]
    return tuple((free + shared)[: min(count, len(devices))])
