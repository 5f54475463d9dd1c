"""`tendril worker init [PATH] [--force]`: write a commented worker.toml with every key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tendril.cli.config_template import render
from tendril.core.files import write_atomically


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write a commented worker.toml with every key at its default",
        description="Write a worker.toml that lists every config key with its default value, its TENDRIL_* "
        "variable and a sentence on what it does.",
    )
    parser.add_argument("path", nargs="?", default="worker.toml", help="file to write (default: ./worker.toml)")
    parser.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser()
    if path.exists() and not args.force:
        print(f"tendril worker init: {path} already exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    if path.is_dir():
        print(f"tendril worker init: {path} is a directory; give a file path", file=sys.stderr)
        return 2
    write_atomically(path, render())
    print(f"wrote {path}; start the worker with: tendril worker run --config {path}")
    return 0
