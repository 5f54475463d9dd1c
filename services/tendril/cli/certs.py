"""`tendril certs init|issue`: a private CA and node certificates for mTLS between hosts.

See docs/CERTIFICATES.md. The work is done by :mod:`tendril.certs`; this module
only parses flags and prints what was written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tendril.certs.authority import DEFAULT_CA_DAYS, DEFAULT_NODE_DAYS
from tendril.certs.names import LOOPBACK_SANS, default_dir


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 day, got {value}")
    return value


def add_parser(subparsers: Any) -> None:
    """Add the ``certs`` group with ``init`` and ``issue``."""
    group: argparse.ArgumentParser = subparsers.add_parser("certs", help="make a private CA and node certificates")
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(title="certs commands", metavar="COMMAND")
    where = f"certificate directory (default {default_dir()})"

    init = commands.add_parser(
        "init",
        help="create a private certificate authority (ca.pem, ca.key)",
        description="Create the CA every peer of one network trusts. Keep ca.key on this machine; copy ca.pem "
        "to every peer.",
    )
    init.add_argument("--dir", type=Path, default=None, metavar="DIR", help=where)
    init.add_argument("--days", type=_days, default=DEFAULT_CA_DAYS, help=f"validity (default {DEFAULT_CA_DAYS})")
    init.add_argument("--name", default="", help="the CA's common name (default 'Tendril CA <random>')")
    init.add_argument("--force", action="store_true", help="replace an existing CA (its certificates stop working)")
    init.set_defaults(func=run_init)

    issue = commands.add_parser(
        "issue",
        help="issue NAME.pem / NAME.key signed by the CA (CN = NAME, the peer id)",
        description="Issue a certificate for one peer: NAME is its peer id (worker.id, the scheduler's id, "
        "or a name for a gateway or data node). It is good for serving and for calling. "
        f"It is always valid for {' and '.join(LOOPBACK_SANS)}; add every host name or IP other peers dial "
        "with --san.",
    )
    issue.add_argument("name", metavar="NAME", help="the peer id, also the certificate's CN")
    issue.add_argument("--dir", type=Path, default=None, metavar="DIR", help=where + "; must hold the CA")
    issue.add_argument(
        "--san", action="append", default=[], metavar="HOST", help="a DNS name or IP peers dial (repeatable)"
    )
    issue.add_argument("--days", type=_days, default=DEFAULT_NODE_DAYS, help=f"validity (default {DEFAULT_NODE_DAYS})")
    issue.add_argument("--force", action="store_true", help="replace an existing NAME.pem / NAME.key")
    issue.set_defaults(func=run_issue)


def run_init(args: argparse.Namespace) -> int:
    from tendril.certs.ops import init_ca

    paths = init_ca(args.dir or default_dir(), days=args.days, name=args.name, force=args.force)
    print(f"CA certificate {paths.cert} (give it to every peer as tls.ca_file)")
    print(f"CA key         {paths.key} (mode 0600; keep it here, it signs new certificates)")
    print(f"next: tendril certs issue <peer id> --dir {paths.cert.parent} --san <host peers dial>")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    from tendril.certs.ops import issue

    issued = issue(args.dir or default_dir(), args.name, sans=args.san, days=args.days, force=args.force)
    print(f"issued {issued.paths.cert} (CN {issued.name}; valid for {', '.join(issued.sans)})")
    print(f"key    {issued.paths.key} (mode 0600)")
    print("use it with this [tls] table in worker.toml (or the --tls-* flags of gateway, scheduler, data serve):")
    print(issued.tls_section(), end="")
    return 0
