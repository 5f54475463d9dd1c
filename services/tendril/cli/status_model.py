"""What `tendril status` knows about a worker, and its ``--json`` form.

No grpc here: the collector (:mod:`tendril.cli.status_collect`) fills these from the
services' replies, the view (:mod:`tendril.cli.status_view`) prints them, and unit
tests build them by hand.

The JSON keys are a stable interface for scripts (documented in docs/OPERATIONS.md): keys
are only ever added, never renamed or removed, within ``"schema": 1``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

SCHEMA_VERSION = 1

SERVING = "SERVING"
DOWN = "DOWN"  # the health check itself failed: refused, timed out, TLS error, ...


@dataclasses.dataclass
class Amount:
    """cpu cores, memory and storage in GiB, whole GPUs."""

    cpu: float = 0.0
    memory_gib: float = 0.0
    storage_gib: float = 0.0
    gpu: int = 0


@dataclasses.dataclass
class ServiceHealth:
    """One service process: its grpc.health.v1 answer and, when local, what its supervisor says."""

    name: str
    address: str
    health: str  # SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN or DOWN
    error: str = ""  # why it is DOWN (or, for the JobService, why it cannot run jobs)
    state: str | None = None  # the supervisor's state for it (serving, backoff, ...); None = unknown
    pid: int | None = None
    restarts: int | None = None  # None = unknown (remote worker, no status file)
    last_exit_code: int | None = None

    @property
    def serving(self) -> bool:
        return self.health == SERVING


@dataclasses.dataclass
class LeaseRow:
    lease_id: str
    owner_id: str
    kind: str  # temporary, renewable
    expires_in_seconds: float  # negative: expired, not pruned yet
    resources: Amount
    price: float
    request_id: str


@dataclasses.dataclass
class JobRow:
    job_id: str
    state: str  # pending, running, succeeded, failed, cancelled
    executor: str  # class/name
    owner_id: str
    lease_id: str
    age_seconds: float  # since dispatch
    progress: dict[str, float]
    exit_code: int | None  # set once ended
    reason: str


@dataclasses.dataclass
class Capacity:
    total: Amount
    reserved: Amount
    free: Amount


@dataclasses.dataclass
class CacheStats:
    """The DataFetcher's slice cache and download counters since it started."""

    hits: int
    misses: int
    cached_bytes: int
    capacity_bytes: int
    downloaded_bytes: int
    wait_seconds: float
    sha256_mismatches: int
    open_jobs: int
    resumed_fetches: int
    evictions: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclasses.dataclass
class SupervisorInfo:
    """The local supervisor as its status file shows it."""

    pid: int | None
    alive: bool
    state: str
    registered: bool
    started_at: float | None
    serving_at: float | None
    status_path: str


@dataclasses.dataclass
class Snapshot:
    """One look at a worker. Sections that could not be read are None, with the reason in ``errors``."""

    worker_id: str
    location: str  # "local" or "remote"
    taken_at: float  # wall-clock seconds
    services: list[ServiceHealth]
    supervisor: SupervisorInfo | None = None
    note: str = ""  # e.g. why restarts are unknown
    leases: list[LeaseRow] | None = None
    jobs: list[JobRow] | None = None
    capacity: Capacity | None = None
    data_cache: CacheStats | None = None
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # section -> error

    @property
    def ok(self) -> bool:
        """Every service answers SERVING (the exit status of `tendril status` is 0 exactly then)."""
        return bool(self.services) and all(s.serving for s in self.services)

    def to_json(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        cache = fields["data_cache"]
        if cache is not None and self.data_cache is not None:
            cache["hit_rate"] = self.data_cache.hit_rate
        return {
            "schema": SCHEMA_VERSION,
            "ok": self.ok,
            "worker_id": self.worker_id,
            "location": self.location,
            "taken_at": self.taken_at,
            "services": fields["services"],
            "supervisor": fields["supervisor"],
            "note": self.note,
            "leases": fields["leases"],
            "jobs": fields["jobs"],
            "resources": fields["capacity"],
            "data_cache": cache,
            "errors": dict(self.errors),
        }
