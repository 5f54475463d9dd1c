"""Detect this host's resources: CPU cores, memory, disk and NVIDIA GPUs.

GPUs are counted through NVML (pynvml). Without an NVIDIA driver the count is 0 and the
reason says why; a GPU is never assumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import psutil

GIB = 1024**3


@dataclasses.dataclass
class GpuInfo:
    """One detected GPU."""

    index: int
    name: str
    memory_gib: float
    uuid: str


@dataclasses.dataclass
class Probe:
    """What :func:`probe` found."""

    cpu: float
    memory_gib: float
    storage_gib: float
    storage_path: str
    gpus: list[GpuInfo]
    gpu_reason: str  # why the GPU count is what it is

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def detect_gpus() -> tuple[list[GpuInfo], str]:
    """NVIDIA GPUs via NVML, and a sentence explaining the result."""
    try:
        import pynvml
    except ImportError:
        return [], "pynvml (nvidia-ml-py) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], f"no NVIDIA driver: NVML could not start ({exc})"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            gpus.append(
                GpuInfo(
                    i,
                    name.decode() if isinstance(name, bytes) else str(name),
                    round(mem / GIB, 2),
                    uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                )
            )
        return gpus, f"NVML found {len(gpus)} GPU(s)"
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def probe(storage_path: str | os.PathLike[str] = ".") -> Probe:
    """Detect CPU cores (usable by this process), memory, free disk at ``storage_path``, GPUs."""
    try:
        cpu = float(len(os.sched_getaffinity(0)))
    except AttributeError:
        cpu = float(psutil.cpu_count() or 1)
    path = Path(storage_path).expanduser()
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    gpus, reason = detect_gpus()
    return Probe(
        cpu=cpu,
        memory_gib=round(psutil.virtual_memory().total / GIB, 2),
        storage_gib=round(free / GIB, 2),
        storage_path=str(path),
        gpus=gpus,
        gpu_reason=reason,
    )
