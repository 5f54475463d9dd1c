"""Which processes a worker runs, in which order, and where each listens.

``depends_on`` names the children a service calls. A child starts once everything it depends
on reports SERVING, and stops only after every child that depends on it has stopped, so no
server is ever stopped under the open streams of a sibling (JobService's Watch on the
LeaseService, the Arbiter's subscription on the gateway, job bridges' streams to the
DataFetcher and ParameterServer).
"""

from __future__ import annotations

import dataclasses

from tendril.core.config import WorkerConfig, split_address
from tendril_proto.job.v1 import job_pb2


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    """One supervised service process."""

    name: str  # short name: logs/<name>.log, status.json key
    module: str  # run as `python -m <module> --config-json <state_dir>/run/config.json`
    config_key: str  # the key of its listen address, named in errors
    depends_on: tuple[str, ...] = ()
    # grpc.health.v1 name under which it says whether it can do its work now ("" = not asked);
    # while it cannot, the worker's registry record is withdrawn (supervisor.py).
    ready_name: str = ""


GATEWAY = ChildSpec("gateway", "tendril.gateway", "gateway.embedded_listen")

WORKER_SERVICES: tuple[ChildSpec, ...] = (
    ChildSpec("lease", "tendril.lease", "lease.listen"),
    ChildSpec("data_fetcher", "tendril.data_fetcher", "data_fetcher.listen"),
    ChildSpec("paramserver", "tendril.paramserver", "paramserver.listen"),
    ChildSpec(
        "job",
        "tendril.job",
        "job.listen",
        depends_on=("lease", "data_fetcher", "paramserver"),
        ready_name=job_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    ),
    ChildSpec("arbiter", "tendril.arbiter", "arbiter.listen", depends_on=("gateway", "lease")),
)


def child_specs(config: WorkerConfig) -> list[ChildSpec]:
    """The children of this worker: the embedded gateway only when no gateway is configured."""
    if config.gateway.address:
        return [
            dataclasses.replace(s, depends_on=tuple(d for d in s.depends_on if d != "gateway")) for s in WORKER_SERVICES
        ]
    return [GATEWAY, *WORKER_SERVICES]


def listen_address(config: WorkerConfig, spec: ChildSpec) -> str:
    """Where ``spec`` listens (port_offset applied to the worker services)."""
    if spec.name == "gateway":
        return config.gateway.embedded_listen
    return config.listen(spec.config_key.partition(".")[0])


def dial_address(listen: str) -> str:
    """The address to connect to a server listening on ``listen`` from this host."""
    host, port = split_address(listen)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gateway_address(config: WorkerConfig) -> str:
    """The gateway this worker joins: the configured one or the embedded one."""
    return config.gateway.address or dial_address(config.gateway.embedded_listen)


def stop_waves(specs: list[ChildSpec]) -> list[list[ChildSpec]]:
    """Groups to stop one after the other: dependents before what they depend on."""
    remaining = {s.name: s for s in specs}
    waves: list[list[ChildSpec]] = []
    while remaining:
        needed = {d for s in remaining.values() for d in s.depends_on}
        wave = [s for s in remaining.values() if s.name not in needed]
        if not wave:  # a dependency cycle would be a programming error in WORKER_SERVICES
            raise ValueError(f"dependency cycle among {sorted(remaining)}")
        waves.append(wave)
        for s in wave:
            del remaining[s.name]
    return waves
