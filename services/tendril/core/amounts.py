"""Amounts of compute (cpu, memory, storage, gpu) with the arithmetic a ledger needs.

Shared by LeaseService (what is reserved, what is free), the Arbiter (does a request fit)
and whoever publishes the worker's totals (:func:`configured_total`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from tendril_proto.common.v1 import common_pb2

# NOTE: cpu/memory/storage are floats summed over many leases; a tolerance keeps
# 0.1 + 0.2 from failing to fit in 0.3.
EPSILON = 1e-9


@dataclasses.dataclass(frozen=True)
class Amount:
    """An amount of resources. ``gpu`` counts whole GPUs."""

    cpu: float = 0.0
    memory_gib: float = 0.0
    storage_gib: float = 0.0
    gpu: int = 0

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.cpu + other.cpu,
            self.memory_gib + other.memory_gib,
            self.storage_gib + other.storage_gib,
            self.gpu + other.gpu,
        )

    def __sub__(self, other: Amount) -> Amount:
        return Amount(
            self.cpu - other.cpu,
            self.memory_gib - other.memory_gib,
            self.storage_gib - other.storage_gib,
            self.gpu - other.gpu,
        )

    def fits_in(self, other: Amount) -> bool:
        """True when every component of ``self`` is at most that of ``other``."""
        return (
            self.cpu <= other.cpu + EPSILON
            and self.memory_gib <= other.memory_gib + EPSILON
            and self.storage_gib <= other.storage_gib + EPSILON
            and self.gpu <= other.gpu
        )

    def shortfall(self, available: Amount) -> list[str]:
        """Human-readable list of the components of ``self`` that exceed ``available``."""
        out = []
        for name in ("cpu", "memory_gib", "storage_gib", "gpu"):
            want, have = getattr(self, name), getattr(available, name)
            if want > have + (0 if name == "gpu" else EPSILON):
                out.append(f"{name} {want:g} > {max(have, 0):g} free")
        return out

    def clamped(self) -> Amount:
        """Negative components (rounding) raised to zero."""
        return Amount(max(self.cpu, 0.0), max(self.memory_gib, 0.0), max(self.storage_gib, 0.0), max(self.gpu, 0))

    def is_negative(self) -> bool:
        return self.cpu < 0 or self.memory_gib < 0 or self.storage_gib < 0 or self.gpu < 0

    def to_proto(self) -> common_pb2.Resources:
        return common_pb2.Resources(
            cpu=self.cpu, memory_gib=self.memory_gib, storage_gib=self.storage_gib, gpu=max(self.gpu, 0)
        )

    @classmethod
    def from_proto(cls, msg: common_pb2.Resources) -> Amount:
        return cls(msg.cpu, msg.memory_gib, msg.storage_gib, int(msg.gpu))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"cpu={self.cpu:g} memory_gib={self.memory_gib:g} storage_gib={self.storage_gib:g} gpu={self.gpu}"


def configured_total(resources: Any, storage_path: str | os.PathLike[str]) -> Amount:
    """The worker's total from its ``[resources]`` section; negative values are detected.

    Detection (CPU cores, memory, free disk at ``storage_path``, NVIDIA GPUs via NVML) runs
    only when at least one value asks for it.
    """
    wanted = (resources.cpu, resources.memory_gib, resources.storage_gib, resources.gpu)
    if all(v >= 0 for v in wanted):
        return Amount(
            float(resources.cpu), float(resources.memory_gib), float(resources.storage_gib), int(resources.gpu)
        )
    from tendril.core.resources import probe

    found = probe(storage_path)
    return Amount(
        float(resources.cpu) if resources.cpu >= 0 else found.cpu,
        float(resources.memory_gib) if resources.memory_gib >= 0 else found.memory_gib,
        float(resources.storage_gib) if resources.storage_gib >= 0 else found.storage_gib,
        int(resources.gpu) if resources.gpu >= 0 else len(found.gpus),
    )
