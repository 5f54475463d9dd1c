"""Entry point shared by every service process started by the supervisor (or by hand).

``python -m tendril.<name> --config-json FILE`` (what the supervisor runs) or
``--config worker.toml [--set key=value ...]`` (by hand). The service is built from the
config, started, and stopped gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tendril.core import tls, tracing
from tendril.core.config import WorkerConfig, config_from_json, load_config, parse_set_flags
from tendril.core.errors import TendrilError
from tendril.core.logs import configure, get_logger
from tendril.core.server import run_until_signal

# NOTE: data-plane processes (services and executors) want these malloc settings from their
# first instruction (REFERENCE.md §C): put them in the environment of every child spawned.
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every Tendril process another one spawns (services, executors, peers).

    NOTE: ``PYTHONSAFEPATH=1`` (Python 3.11, same as ``-P``): ``python -m`` would otherwise put
    the working directory first on sys.path, so a ``tendril/`` (or ``tendril_proto/``) folder
    where a process starts, e.g. in a job's work dir, would shadow the installed package.
    """
    return {
        **os.environ,
        "GLIBC_TUNABLES": GLIBC_TUNABLES,
        "PYTHONUNBUFFERED": "1",
        "PYTHONSAFEPATH": "1",
        **(extra or {}),
    }


class Service(Protocol):
    """What a service process runs: start serving, then stop gracefully."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def read_config(argv: list[str] | None, description: str) -> WorkerConfig:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-json", help="resolved configuration written by the supervisor")
    parser.add_argument("--config", help="worker.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args(argv)
    if args.config_json:
        with open(args.config_json) as f:
            return config_from_json(json.load(f))
    return load_config(args.config, overrides=parse_set_flags(args.set))


def service_main(name: str, build: Callable[[WorkerConfig], Any], argv: list[str] | None = None) -> None:
    """Run one service process until SIGTERM/SIGINT. ``build(config)`` returns a Service."""
    try:
        config = read_config(argv, f"Tendril {name} service")
        # NOTE: before build(): every server and channel the service makes takes its
        # credentials from here; exported so that executors this process spawns find them too.
        tls.configure(config.tls, expected_name=config.worker_id, export_env=True)
    except TendrilError as exc:
        print(f"tendril {name}: {exc.message}", file=sys.stderr)
        sys.exit(2)
    configure(name, level=config.telemetry.log_level, fmt=config.telemetry.log_format)
    tracing.setup(name, worker_id=config.worker_id)  # before build(): servers and channels pick it up
    log = get_logger("tendril.process", worker_id=config.worker_id)

    async def main() -> None:
        service: Service = build(config)
        await run_until_signal(service.start, service.stop)

    try:
        asyncio.run(main())
    except TendrilError as exc:
        log.error("service.failed", error=exc.message, reason=exc.reason)
        print(f"tendril {name}: {exc.message}", file=sys.stderr)
        sys.exit(3)
