"""Check every listen address before any process starts, so a conflict is one clear line."""

from __future__ import annotations

import errno
import os
import time

from tendril.core.config import WorkerConfig, env_var, split_address
from tendril.core.server import check_bindable
from tendril.supervisor.errors import SupervisorError, SupervisorReason
from tendril.supervisor.specs import ChildSpec, listen_address

METRICS_KEY = "telemetry.metrics_listen"  # served by the supervisor itself (metrics_endpoint)
RETRY_SECONDS = 0.05


def setting_words(config_key: str, port_offset: int = 0) -> str:
    """How an error names the setting of an address: its config key, env var and any offset."""
    words = f"config key {config_key} / {env_var(config_key)}"
    if port_offset:
        words += f", plus worker.port_offset {port_offset}"
    return words


def _key_words(config: WorkerConfig, spec: ChildSpec) -> str:
    return setting_words(spec.config_key, 0 if spec.name == "gateway" else config.worker.port_offset)


def _targets(config: WorkerConfig, specs: list[ChildSpec]) -> list[tuple[str, str, str]]:
    """(address, config key, how errors name the setting) of everything the worker listens on."""
    targets = [(listen_address(config, s), s.config_key, _key_words(config, s)) for s in specs]
    targets.append((config.metrics_listen(), METRICS_KEY, setting_words(METRICS_KEY, config.worker.port_offset)))
    return targets


def _bindable(address: str, grace: float) -> int:
    """check_bindable, tried again for ``grace`` seconds while the address is in use."""
    deadline = time.monotonic() + grace
    while True:
        code = check_bindable(address)
        if code != errno.EADDRINUSE or time.monotonic() >= deadline:
            return code
        time.sleep(RETRY_SECONDS)


def check_ports(config: WorkerConfig, specs: list[ChildSpec], *, grace: float = 0.0) -> None:
    """Raise SupervisorError naming the address and the config key of the first conflict.

    ``grace``: how long an address in use may take to come free (the services of a supervisor
    that was killed release their ports once their last thread has exited).
    """
    seen: dict[tuple[str, int], str] = {}
    for address, config_key, words in _targets(config, specs):
        host, port = split_address(address)
        if port == 0:
            raise SupervisorError(
                f"{address} has port 0 ({words}); give every service a fixed port so others can find it",
                reason=SupervisorReason.PORT_ZERO,
            )
        if port > 65535:
            raise SupervisorError(
                f"{address} is not a TCP port ({words}); lower the port or worker.port_offset",
                reason=SupervisorReason.PORT_OUT_OF_RANGE,
            )
        other = seen.get((host, port))
        if other is not None:
            raise SupervisorError(
                f"{address} is configured twice: {other} and {config_key}; give each service its own port",
                reason=SupervisorReason.PORT_TWICE,
            )
        seen[(host, port)] = config_key
        code = _bindable(address, grace)
        if code == errno.EADDRINUSE:
            raise SupervisorError(
                f"{address} is in use ({words}); stop the other process or choose another port",
                reason=SupervisorReason.PORT_IN_USE,
            )
        if code:
            raise SupervisorError(
                f"cannot listen on {address} ({words}): {errno.errorcode.get(code, code)} {os.strerror(code)}",
                reason=SupervisorReason.CANNOT_LISTEN,
            )
