"""`tendril worker probe [--json]`: what this host has and what the worker would offer.

GPUs are counted through NVML only; without an NVIDIA driver the count is 0 and the reason
is printed. A GPU is never assumed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tendril.cli.config_args import add_config_args, config_from_args
from tendril.core.amounts import configured_total
from tendril.core.resources import probe


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="print detected CPU, memory, disk and GPUs, and what the worker would offer",
        description="Detect CPU cores, memory, free disk (under the work dir) and NVIDIA GPUs (NVML), and "
        "show the totals the worker offers after its [resources] settings.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_config_args(parser)
    parser.set_defaults(func=run)


def report(args: argparse.Namespace) -> dict[str, Any]:
    config = config_from_args(args)
    found = probe(config.work_dir)
    offered = configured_total(config.resources, config.work_dir)
    return {
        "detected": {
            "cpu": found.cpu,
            "memory_gib": found.memory_gib,
            "storage_gib": found.storage_gib,
            "storage_path": found.storage_path,
            "gpu_count": len(found.gpus),
            "gpus": [g.__dict__ for g in found.gpus],
            "gpu_reason": found.gpu_reason,
        },
        "offered": offered.to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    data = report(args)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    found, offered = data["detected"], data["offered"]
    print(f"cpu      {found['cpu']:g} cores")
    print(f"memory   {found['memory_gib']:g} GiB")
    print(f"disk     {found['storage_gib']:g} GiB free at {found['storage_path']}")
    print(f"gpus     {found['gpu_count']} ({found['gpu_reason']})")
    for gpu in found["gpus"]:
        print(f"  gpu {gpu['index']}: {gpu['name']}, {gpu['memory_gib']:g} GiB, {gpu['uuid']}")
    print(
        f"offered  cpu={offered['cpu']:g} memory_gib={offered['memory_gib']:g} "
        f"storage_gib={offered['storage_gib']:g} gpu={offered['gpu']} (config [resources]; negative = detect)"
    )
    return 0
