"""Entry point shared by every service process started by the supervisor (or by hand).

``python -m tendril.<name> --config-json FILE`` (what the supervisor runs) or
``--config worker.toml [--set key=value ...]`` (by hand). The service is built from the
config, started, and stopped gracefully on SIGTERM/SIGINT.

Exit status: 2 when it cannot start because of its configuration or of the worker's state (a
damaged database, a folder it cannot write: one line on stderr names the file and the way
out), 3 for another error it reports (a port in use), 70 when one of its loops died
(:mod:`tendril.core.liveness`), 1 for a crash (traceback in its log).

A process started by the supervisor dies with it (:func:`die_with_supervisor`), so a
supervisor that is killed leaves no service behind holding the worker's ports.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tendril.core import tls, tracing
from tendril.core.config import WorkerConfig, config_from_json, load_config, parse_set_flags
from tendril.core.errors import TendrilError
from tendril.core.logs import configure, get_logger
from tendril.core.server import run_until_signal
from tendril.core.state import diagnose

# NOTE: data-plane processes (services and executors) want these malloc settings from their
# first instruction (REFERENCE.md §C): put them in the environment of every child spawned.
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824"

SUPERVISOR_PID_ENV = "TENDRIL_SUPERVISOR_PID"  # set by the supervisor for its children only
PR_SET_PDEATHSIG = 1
PARENT_POLL_SECONDS = 0.5
EXIT_CONFIG = 2
EXIT_FAILED = 3


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


def die_with_supervisor() -> None:
    """When started by the supervisor: be killed (SIGKILL) the moment it dies, however it dies.

    NOTE: PR_SET_PDEATHSIG (Linux) is set by the child itself, after exec: the supervisor
    starts children without running Python between fork and exec (it has gRPC threads). The
    signal comes when the *thread* that forked the child ends; the supervisor forks from its
    main thread, which lives as long as it does. A supervisor that died before this call is
    caught by the parent check; where prctl is missing a thread polls the parent instead.
    SIGKILL, not SIGTERM: a graceful stop would hold the ports for seconds, and a restarted
    worker must find them free; every service recovers from a SIGKILL (its state is on disk).
    The variable is removed so that executors, which a service spawns, do not inherit it.
    """
    expected = os.environ.pop(SUPERVISOR_PID_ENV, "")
    if not expected.isdigit():
        return
    supervisor = int(expected)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != supervisor:
        print(f"tendril: the supervisor (pid {supervisor}) is gone; exiting", file=sys.stderr, flush=True)
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == supervisor:
                time.sleep(PARENT_POLL_SECONDS)
            os._exit(1)

        threading.Thread(target=watch, name="watch-supervisor", daemon=True).start()


def service_main(name: str, build: Callable[[WorkerConfig], Any], argv: list[str] | None = None) -> None:
    """Run one service process until SIGTERM/SIGINT. ``build(config)`` returns a Service."""
    die_with_supervisor()
    try:
        config = read_config(argv, f"Tendril {name} service")
        # NOTE: before build(): every server and channel the service makes takes its
        # credentials from here; exported so that executors this process spawns find them too.
        tls.configure(config.tls, expected_name=config.worker_id, export_env=True)
    except TendrilError as exc:
        print(f"tendril {name}: {exc.message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
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
        sys.exit(EXIT_FAILED)
    except (sqlite3.DatabaseError, OSError) as exc:
        # NOTE: a database or file error while starting: if the state dir is the cause (a
        # damaged database, a folder that takes no data), say which file and what to do, and
        # exit 2 (a restart would meet the same file); anything else stays a crash.
        problem = diagnose(config.state_dir, config.work_dir)
        if problem is None:
            raise
        log.error("service.state_unusable", error=problem.message, reason=problem.reason, cause=repr(exc))
        print(f"tendril {name}: {problem.message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
