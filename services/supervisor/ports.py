"""Check every listen address before any process starts, so a conflict is one clear line."""

from __future__ import annotations

import errno
import os
import socket

from tendril.services.cli.config_template import env_var
from tendril.services.core.config import WorkerConfig, split_address
from tendril.services.supervisor.errors import SupervisorError
from tendril.services.supervisor.specs import ChildSpec, listen_address


def _key_words(config: WorkerConfig, spec: ChildSpec) -> str:
    words = f"config key {spec.config_key} / {env_var(spec.config_key)}"
    if spec.name != "gateway" and config.worker.port_offset:
        words += f", plus worker.port_offset {config.worker.port_offset}"
    return words


def check_bindable(address: str) -> int:
    """0 when a server could listen on ``address`` now, else the errno of the failed bind."""
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # NOTE: gRPC sets SO_REUSEADDR too, so a port held only by TIME_WAIT connections of a
        # previous run is free for it; a listening socket still makes this bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno or errno.EADDRINUSE
    return 0


def check_ports(config: WorkerConfig, specs: list[ChildSpec]) -> None:
    """Raise SupervisorError naming the address and the config key of the first conflict."""
    seen: dict[tuple[str, int], ChildSpec] = {}
    for spec in specs:
        address = listen_address(config, spec)
        host, port = split_address(address)
        if port == 0:
            raise SupervisorError(
                f"{address} has port 0 ({_key_words(config, spec)}); give every service a fixed port so others "
                "can find it",
                reason="PORT_ZERO",
            )
        other = seen.get((host, port))
        if other is not None:
            raise SupervisorError(
                f"{address} is configured twice: {other.config_key} and {spec.config_key}; give each service its "
                "own port",
                reason="PORT_TWICE",
            )
        seen[(host, port)] = spec
        code = check_bindable(address)
        if code == errno.EADDRINUSE:
            raise SupervisorError(
                f"{address} is in use ({_key_words(config, spec)}); stop the other process or choose another port",
                reason="PORT_IN_USE",
            )
        if code:
            raise SupervisorError(
                f"cannot listen on {address} ({_key_words(config, spec)}): {errno.errorcode.get(code, code)} "
                f"{os.strerror(code)}",
                reason="CANNOT_LISTEN",
            )
