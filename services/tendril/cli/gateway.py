"""`tendril gateway run [--listen ADDR]`: a standalone gateway (bus + registry) for a network."""

from __future__ import annotations

import argparse
import errno
import os
from typing import Any

from pydantic import ValidationError

from tendril.core import tls
from tendril.core.config import GatewaySection, split_address
from tendril.core.errors import ConfigError
from tendril.core.server import check_bindable
from tendril.supervisor.errors import SupervisorError, SupervisorReason

DEFAULT_LISTEN = "127.0.0.1:50050"
BACKENDS = ("memory", "redis")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_PREFIX = "tendril:"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("gateway", help="run a network's gateway")
    parser.set_defaults(group_parser=parser)
    commands = parser.add_subparsers(title="gateway commands", metavar="COMMAND")
    run_parser = commands.add_parser(
        "run",
        help="serve the topic bus and the registry until Ctrl-C / SIGTERM",
        description="Run a gateway on its own host: workers join it with gateway.address = ADDR.",
    )
    run_parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR", help=f"default {DEFAULT_LISTEN}")
    run_parser.add_argument(
        "--backend",
        default="memory",
        choices=BACKENDS,
        help="where the bus and registry live: memory (this process; default) or redis (--redis-url, shared by every "
        "gateway on that Redis)",
    )
    run_parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        metavar="URL",
        help="Redis of --backend redis (redis://[:password@]host:port/db, rediss:// for TLS; "
        f"default {DEFAULT_REDIS_URL})",
    )
    run_parser.add_argument(
        "--redis-prefix",
        default=DEFAULT_REDIS_PREFIX,
        metavar="PREFIX",
        help="prefix of every Redis key and channel; gateways of one network use the same "
        f"(default {DEFAULT_REDIS_PREFIX})",
    )
    defaults = GatewaySection()
    run_parser.add_argument(
        "--max-record-bytes",
        type=int,
        default=defaults.max_record_bytes,
        metavar="N",
        help="largest registry record a Put may store, serialized bytes in [1024, 4194304] "
        f"(default {defaults.max_record_bytes})",
    )
    for flag, value, what in (
        ("--put-rate", defaults.put_rate, "registry Puts per second per caller"),
        ("--put-burst", defaults.put_burst, "registry Puts per caller at once"),
        ("--publish-rate", defaults.publish_rate, "bus Publishes per second per caller"),
        ("--publish-burst", defaults.publish_burst, "bus Publishes per caller at once"),
    ):
        run_parser.add_argument(flag, type=float, default=value, metavar="N", help=f"{what} (default {value:g})")
    run_parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    run_parser.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    tls.add_tls_args(run_parser)
    run_parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        split_address(args.listen)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}", key="--listen") from exc
    if args.backend == "redis" and not args.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"--redis-url {args.redis_url!r} is not a Redis URL; give redis://host:port/db (or rediss://, unix://)",
            key="--redis-url",
        )
    try:
        # NOTE: the flags go through the [gateway] section's own checks, so their ranges are the config keys'.
        section = GatewaySection(
            max_record_bytes=args.max_record_bytes,
            put_rate=args.put_rate,
            put_burst=args.put_burst,
            publish_rate=args.publish_rate,
            publish_burst=args.publish_burst,
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        flag = "--" + str(error["loc"][0]).replace("_", "-") if error["loc"] else "a flag"
        raise ConfigError(f"{flag}: {error['msg']} (got {error.get('input')!r})", key=flag) from exc
    tls.configure_from_args(args)
    code = check_bindable(args.listen)
    if code:
        # NOTE: checked here so that a taken port is the same one-line error, exit 2, as for a worker.
        what = "is in use" if code == errno.EADDRINUSE else f"cannot be listened on ({os.strerror(code)})"
        raise SupervisorError(
            f"{args.listen} {what} (--listen of tendril gateway run)", reason=SupervisorReason.PORT_IN_USE
        )
    from tendril.gateway.limits import GatewayLimits, Rate
    from tendril.gateway.service import run_gateway

    limits = GatewayLimits(
        max_record_bytes=section.max_record_bytes,
        put=Rate(section.put_rate, section.put_burst),
        publish=Rate(section.publish_rate, section.publish_burst),
    )
    run_gateway(
        args.listen,
        log_level=args.log_level,
        log_format=args.log_format,
        backend=args.backend,
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
        limits=limits,
    )
    return 0
