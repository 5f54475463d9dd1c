"""`tendril status [--worker HOST] [--json] [--config FILE]`: one screen for a running worker.

Each service's grpc.health.v1 answer and restarts, leases, jobs, free and used resources and
the data cache. Exit status 0 when every service is SERVING, 1 otherwise (2: bad flags or
config), so scripts and health checks can use it as is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from tendril.cli.status_collect import DEFAULT_JOB_LIMIT, collect
from tendril.cli.status_view import render
from tendril.cli.worker_target import add_target_args, target_from_args
from tendril.core import tls
from tendril.core.errors import ConfigError

EXIT_SERVING = 0
EXIT_NOT_SERVING = 1


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show a running worker: services, restarts, leases, jobs, resources, data cache",
        description="One screen for a running worker (local by default, or --worker HOST). Exit status 0 when "
        "every service answers SERVING, 1 otherwise. --json prints the same as one JSON object "
        "(keys documented in docs/OPERATIONS.md).",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOB_LIMIT,
        metavar="N",
        help=f"show the N newest jobs (default {DEFAULT_JOB_LIMIT})",
    )
    add_target_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1 (got {args.jobs})", key="--jobs")
    config, target = target_from_args(args)
    # NOTE: the worker's own [tls] files: under mTLS its services accept only certificates of its CA.
    tls.configure(config.tls)
    snapshot = asyncio.run(collect(target, timeout=args.timeout, job_limit=args.jobs))
    if args.json:
        print(json.dumps(snapshot.to_json(), indent=2))
    else:
        print(render(snapshot), end="")
    return EXIT_SERVING if snapshot.ok else EXIT_NOT_SERVING
