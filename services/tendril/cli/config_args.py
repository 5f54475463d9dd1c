"""The ``--config FILE`` / ``--set key=value`` arguments every worker command shares."""

from __future__ import annotations

import argparse

from tendril.core.config import WorkerConfig, load_config, parse_set_flags


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="worker.toml (see `tendril worker init`)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set lease.renewable_seconds=20 (repeatable; wins over file and env)",
    )


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    """defaults < --config file < TENDRIL_* env < --set flags."""
    return load_config(args.config, overrides=parse_set_flags(args.set))
