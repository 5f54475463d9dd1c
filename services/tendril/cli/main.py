"""Entry point of the ``tendril`` console script.

Each command group lives in its own package and registers itself through a function
``add_parser(subparsers)`` that adds its group parser (e.g. ``worker``) with its subcommands.
Every subcommand parser sets ``func``: a callable taking the parsed arguments and returning the
exit code (``None`` counts as 0). Groups of optional packages are imported with a guard: a
package that is not there leaves its group out; one that fails to import still shows its
group, which then explains the failure instead of breaking every other command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from tendril.core.errors import TendrilError

# (group name, module with add_parser, required). Required groups are part of this package.
GROUPS: tuple[tuple[str, str, bool], ...] = (
    ("worker", "tendril.cli.worker", True),
    ("gateway", "tendril.cli.gateway", True),
    ("status", "tendril.cli.status", True),
    ("jobs", "tendril.cli.jobs", True),
    ("scheduler", "tendril.scheduler.cli", False),
    ("data", "tendril.data_node.cli", False),
    ("model", "tendril.cli.model", True),
    ("certs", "tendril.cli.certs", False),
    ("lab", "tendril.lab.cli", False),
)

EXIT_USAGE = 2


def _missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True when the import failed because ``module`` (or a package above it) does not exist."""
    parts = module.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _unavailable(subparsers: Any, group: str, error: str) -> None:
    parser = subparsers.add_parser(group, help=f"(unavailable: {error})", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def explain(_: argparse.Namespace) -> int:
        print(f"tendril {group}: this command group could not be loaded: {error}", file=sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(func=explain)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tendril", description="Tendril: a worker node for decentralized DiLoCo training."
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group, module_name, required in GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if required or not _missing(exc, module_name):
                _unavailable(subparsers, group, f"{type(exc).__name__}: {exc}")
            continue
        except Exception as exc:  # a broken optional package must not take the other commands down
            _unavailable(subparsers, group, f"{type(exc).__name__}: {exc}")
            continue
        module.add_parser(subparsers)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # A group without its subcommand (`tendril worker`) prints that group's help.
        (getattr(args, "group_parser", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code = func(args)
    except TendrilError as exc:
        # NOTE: config errors, port conflicts, ... are the user's to fix: one line, no traceback.
        print(f"tendril: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


def main() -> None:
    sys.exit(run())
