"""`tendril worker run`: start the supervised worker (see tendril.supervisor)."""

from __future__ import annotations

import argparse
from typing import Any

from tendril.cli.config_args import add_config_args, config_from_args


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="start the worker's services and keep them running until Ctrl-C / SIGTERM",
        description="Start the gateway (unless gateway.address is set) and the five worker services, each in "
        "its own process; restart crashed ones; stop all of them on Ctrl-C or SIGTERM.",
    )
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    # NOTE: imported here so `tendril worker init/probe` stay fast and never load grpc.
    from tendril.supervisor import run_supervisor

    return run_supervisor(config)
