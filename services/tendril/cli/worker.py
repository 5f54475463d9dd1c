"""`tendril worker ...`: run a worker, write its config file, show what it would offer."""

from __future__ import annotations

import argparse
from typing import Any

from tendril.cli import worker_init, worker_probe, worker_run


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("worker", help="run and configure a worker")
    parser.set_defaults(group_parser=parser)
    commands = parser.add_subparsers(title="worker commands", metavar="COMMAND")
    worker_run.add_parser(commands)
    worker_init.add_parser(commands)
    worker_probe.add_parser(commands)
