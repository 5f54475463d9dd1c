"""Which worker an operator command talks to, and where each of its services listens.

Shared by `tendril status` and `tendril jobs`. Two ways to name the worker:

* **local** (default): the worker described by the config (defaults < ``--config`` < env <
  ``--set``). Its supervisor's ``<state_dir>/run/status.json`` is read when it exists: while
  that supervisor is alive, the addresses come from it (what really runs, whatever flags the
  worker was started with) and so do each service's restarts.
* **remote** (``--worker HOST``): the same config's ports (``worker.port_offset`` applied, so
  ``--set worker.port_offset=100`` reaches a worker started with that offset) on HOST.
  Restart counts live only in the remote host's status file, so they are unknown.

No grpc here: this module only computes addresses (unit-tested directly).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from tendril.cli.config_args import add_config_args, config_from_args
from tendril.core.config import WorkerConfig, split_address
from tendril.core.errors import ConfigError
from tendril.supervisor.specs import child_specs, dial_address, listen_address

# grpc.health.v1 service name checked for each supervised child (the status file's names).
HEALTH_NAMES: dict[str, str] = {
    "gateway": "tendril.gateway.v1.RegistryService",
    "arbiter": "tendril.arbiter.v1.ArbiterService",
    "lease": "tendril.lease.v1.LeaseService",
    "job": "tendril.job.v1.JobService",
    "data_fetcher": "tendril.data.v1.DataFetcherService",
    "paramserver": "tendril.paramserver.v1.ParameterServerService",
}

DEFAULT_TIMEOUT_SECONDS = 3.0


@dataclasses.dataclass(frozen=True)
class ServiceTarget:
    """One service process of the worker: its status-file name, dial address, health name."""

    name: str
    address: str
    health_name: str  # "" = the server's overall health


@dataclasses.dataclass
class WorkerTarget:
    """A worker as an operator command sees it."""

    worker_id: str
    remote: bool
    services: list[ServiceTarget]
    status_path: Path | None  # the supervisor's status file (local only)
    supervisor: dict[str, Any] | None  # its content when it could be read
    supervisor_alive: bool
    note: str  # why restarts are unknown, or why the status file is not used; "" when all is known

    def address(self, name: str) -> str:
        for service in self.services:
            if service.name == name:
                return service.address
        raise KeyError(name)


def add_target_args(parser: argparse.ArgumentParser) -> None:
    """``--worker HOST``, ``--timeout`` and the config flags (``--config``, ``--set``)."""
    parser.add_argument(
        "--worker",
        metavar="HOST",
        help="a worker on another host: its services at HOST on the config's ports (default: the local worker)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"deadline of each call (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    add_config_args(parser)


def target_from_args(args: argparse.Namespace) -> tuple[WorkerConfig, WorkerTarget]:
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0 (got {args.timeout:g})", key="--timeout")
    config = config_from_args(args)
    return config, resolve(config, args.worker)


def remote_host(text: str) -> str:
    """The host part of ``--worker``, bracketed when it is an IPv6 address."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return f"[{ipaddress.IPv6Address(host)}]"
    except ValueError:
        pass
    if not host or ":" in host or "/" in host:
        raise ConfigError(
            f"--worker {text!r}: give a host name or IP address, not host:port; the ports come from the config "
            "(shift them with --set worker.port_offset=N, or set one with --set job.listen=HOST:PORT)",
            key="--worker",
        )
    return host


def on_host(listen: str, host: str) -> str:
    """``listen``'s port on ``host``."""
    _, port = split_address(listen)
    return f"{host}:{port}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_status_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _from_config(config: WorkerConfig, host: str | None) -> list[ServiceTarget]:
    out = []
    for spec in child_specs(config):
        listen = listen_address(config, spec)
        address = on_host(listen, host) if host else dial_address(listen)
        out.append(ServiceTarget(spec.name, address, HEALTH_NAMES.get(spec.name, "")))
    return out


def _from_status(children: dict[str, Any]) -> list[ServiceTarget]:
    return [
        ServiceTarget(name, dial_address(str(child["address"])), HEALTH_NAMES.get(name, ""))
        for name, child in children.items()
    ]


def resolve(config: WorkerConfig, worker: str | None = None) -> WorkerTarget:
    """Where the services of the worker are: ``worker`` = a remote host, None = the local worker."""
    if worker is not None:
        host = remote_host(worker)
        return WorkerTarget(
            worker_id=config.worker.id or f"worker at {host}",
            remote=True,
            services=_from_config(config, host),
            status_path=None,
            supervisor=None,
            supervisor_alive=False,
            note="remote worker: restarts are unknown (they are in status.json on the worker's host)",
        )
    path = config.state_dir / "run" / "status.json"
    status = read_status_file(path)
    services = _from_config(config, None)
    alive, note = False, ""
    if status is None:
        note = (
            f"no supervisor status at {path}: restarts are unknown (is `tendril worker run` running with this "
            "config? pass the same --config / --set worker.state_dir)"
        )
    else:
        pid = status.get("supervisor_pid")
        alive = isinstance(pid, int) and pid_alive(pid)
        children = status.get("children")
        if not alive:
            note = f"supervisor pid {pid} is not running: {path} is stale"
        elif isinstance(children, dict) and all(isinstance(c, dict) and "address" in c for c in children.values()):
            # NOTE: a live supervisor's file says where its children really listen, even when
            # this command was given other flags than the worker was started with.
            services = _from_status(children)
    worker_id = str(status.get("worker_id")) if status and status.get("worker_id") else config.worker_id
    return WorkerTarget(worker_id, False, services, path, status, alive, note)
