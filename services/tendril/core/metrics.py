"""Every Prometheus metric of a worker, defined once; services import the objects from here.

One worker runs several processes but serves one ``/metrics`` endpoint (the supervisor's,
``telemetry.metrics_listen``). prometheus_client's multiprocess mode makes that work: the
supervisor gives every child ``PROMETHEUS_MULTIPROC_DIR=<state_dir>/run/metrics``, each child
writes its values into memory-mapped files there, and the supervisor's endpoint adds them up
(:func:`multiprocess_registry`). A process without that variable (a unit test, a service run
by hand) keeps its values in memory, where nobody scrapes them: updating a metric is always safe.

# NOTE: prometheus_client picks multiprocess or in-memory values when it is first imported,
# so PROMETHEUS_MULTIPROC_DIR must be in a child's environment from its start (the supervisor
# sets it at spawn); setting it later in a running process has no effect.

Gauges say how their values of several processes combine (``multiprocess_mode``): ``livesum``
adds the values of live processes only, so a crashed service's last value disappears when
the supervisor marks it dead (:func:`mark_process_dead`) and its restart sets the value anew.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "tendril_"

LEASE_KINDS = ("temporary", "renewable")
OFFER_RESULTS = ("accepted", "rejected", "timed_out", "failed", "dropped")
JOB_END_STATES = ("succeeded", "failed", "cancelled")
STREAM_KINDS = ("update_push", "update_pull", "params_push", "params_pull", "slice")

# -- allocation ---------------------------------------------------------------------------------

LEASES_ACTIVE = Gauge(
    "tendril_leases_active",
    "Live leases on this worker, by kind (temporary: an offer is out; renewable: accepted).",
    ["kind"],
    multiprocess_mode="livesum",
)
OFFERS = Counter(
    "tendril_offers",
    "Resource requests the arbiter decided, by result; reason says why a request was dropped ('' otherwise).",
    ["result", "reason"],
)

# -- jobs ---------------------------------------------------------------------------------------

JOBS_ACTIVE = Gauge("tendril_jobs_active", "Jobs whose executor runs now.", multiprocess_mode="livesum")
JOBS_COMPLETED = Counter("tendril_jobs_completed", "Jobs that ended, by final state.", ["state"])
EXECUTORS_STARTED = Counter("tendril_executors_started", "Executor processes JobService started.")
JOB_CLEANUP_FAILURES = Counter(
    "tendril_job_cleanup_failures",
    "Failed attempts to clean up after an ended job (save its log, remove its work dir); each is retried.",
)

# -- data ---------------------------------------------------------------------------------------

DATA_CACHE_HITS = Counter(
    "tendril_data_cache_hits", "Slices served from the DataFetcher cache (or from a download already running)."
)
DATA_CACHE_MISSES = Counter("tendril_data_cache_misses", "Slices the DataFetcher had to download.")
DATA_CACHE_BYTES = Gauge(
    "tendril_data_cache_bytes", "Bytes of verified slices in the DataFetcher cache.", multiprocess_mode="livesum"
)
DATA_CACHE_CAPACITY_BYTES = Gauge(
    "tendril_data_cache_capacity_bytes", "The slice cache's bound (data_fetcher.cache_bytes).", multiprocess_mode="max"
)
DATA_WAIT = Histogram(
    "tendril_data_wait_seconds",
    "How long a job's NextSlice waited for its slice (0 when it was prefetched).",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

# -- tensor and slice streams -------------------------------------------------------------------

BYTES_SENT = Counter(
    "tendril_stream_sent_bytes",
    "Payload bytes this worker sent, by stream kind (counted as each transfer or call ends).",
    ["stream"],
)
BYTES_RECEIVED = Counter(
    "tendril_stream_received_bytes",
    "Payload bytes this worker received, by stream kind (counted as each transfer or call ends).",
    ["stream"],
)

DATA_STREAMS = Gauge(
    "tendril_data_streams",
    "TCP connections the next push or pull to a parameter server host uses, chosen by measuring throughput "
    '(docs/WAN.md "Parallel streams").',
    ["peer", "direction"],
    multiprocess_mode="mostrecent",
)
DATA_STREAM_MBIT = Gauge(
    "tendril_data_stream_mbit_per_s",
    "Throughput of the last measured push or pull to a parameter server host, in Mbit/s.",
    ["peer", "direction"],
    multiprocess_mode="mostrecent",
)

# -- parameter server ---------------------------------------------------------------------------

ROUNDS_CLOSED = Counter("tendril_paramserver_rounds_closed", "DiLoCo rounds the parameter server closed.")
ROUND_DURATION = Histogram(
    "tendril_paramserver_round_duration_seconds",
    "From a round's first committed update until its outer update was served (straggler wait + aggregation).",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

# -- the supervisor's figures (read from its status when scraped, see SupervisorCollector) ------

SERVICE_RESTARTS = "tendril_service_restarts"
SERVICE_UP = "tendril_service_up"


def _initialise() -> None:
    """Create every known label set, so each family is listed (at 0) before its first event."""
    for kind in LEASE_KINDS:
        LEASES_ACTIVE.labels(kind=kind)
    for result in OFFER_RESULTS:
        if result != "dropped":
            OFFERS.labels(result=result, reason="")
    for state in JOB_END_STATES:
        JOBS_COMPLETED.labels(state=state)
    for stream in STREAM_KINDS:
        BYTES_SENT.labels(stream=stream)
        BYTES_RECEIVED.labels(stream=stream)


_initialise()


# -- helpers the services call ------------------------------------------------------------------

# The arbiter's drop reasons are sentences for people; the label keeps a fixed, small set.
# The first prefix that matches wins (tests check every reason the arbiter writes is covered).
_DROP_REASONS: tuple[tuple[str, str], ...] = (
    ("invalid request", "invalid"),
    ("duplicate", "duplicate"),
    ("deadline passed", "deadline"),
    ("scheduler ", "scheduler_not_allowed"),
    ("no configured executor", "executor"),
    ("bid ", "bid_below_floor"),
    ("does not fit", "no_room"),
    ("arbiter overloaded", "overloaded"),
    ("the arbiter is stopping", "stopping"),
    ("lease service unavailable", "lease_service"),
    ("internal error", "internal"),
)


def drop_reason_label(reason: str) -> str:
    """The low-cardinality label for one of the arbiter's drop reasons ("other" if unknown)."""
    for prefix, label in _DROP_REASONS:
        if reason.startswith(prefix):
            return label
    return "other"


def count_offer(result: str, reason: str) -> None:
    """One decided request (``result`` is an OfferState value)."""
    OFFERS.labels(result=result, reason=drop_reason_label(reason) if result == "dropped" else "").inc()


def round_closed(seconds: float | None) -> None:
    """The parameter server served a round's update ``seconds`` after its first commit."""
    ROUNDS_CLOSED.inc()
    if seconds is not None:
        ROUND_DURATION.observe(max(seconds, 0.0))


def set_leases_active(kinds: Iterable[str]) -> None:
    """Set the lease gauge from the kinds of every live lease."""
    counts = dict.fromkeys(LEASE_KINDS, 0)
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in counts.items():
        LEASES_ACTIVE.labels(kind=kind).set(count)


class TotalsMirror:
    """Exports running totals that a core keeps itself (e.g. the DataFetcher's stats) as counters.

    Each :meth:`update` adds what a total grew by since the last one. A total that shrinks
    (a core correcting itself) is not subtracted: counters never go down; the next growth
    above the highest value seen is counted again.
    """

    def __init__(self, counters: Mapping[str, Counter]) -> None:
        self.counters = dict(counters)
        self._seen: dict[str, float] = dict.fromkeys(self.counters, 0.0)

    def update(self, totals: object) -> None:
        """Read each counter's attribute of ``totals`` and count its growth."""
        for name, counter in self.counters.items():
            value = float(getattr(totals, name))
            grown = value - self._seen[name]
            if grown > 0:
                counter.inc(grown)
                self._seen[name] = value


# -- the supervisor's side: one endpoint for every process ------------------------------------


def prepare_multiprocess_dir(path: Path) -> Path:
    """Make ``path`` an empty directory for the children's value files (old runs' files removed)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_file() and entry.suffix == ".db":
            entry.unlink()
    return path


def child_env(path: Path) -> dict[str, str]:
    """What to add to a child's environment so its metrics reach the supervisor's endpoint."""
    return {MULTIPROC_DIR_ENV: str(path)}


def mark_process_dead(path: Path, pid: int) -> None:
    """A child ended: drop its live gauges (its counters stay; totals never go back)."""
    multiprocess.mark_process_dead(pid, str(path))


@dataclasses.dataclass(frozen=True)
class ServiceFigures:
    """What the supervisor knows of one child when the endpoint is scraped."""

    restarts: int
    serving: bool


class SupervisorCollector(Collector):
    """Service restarts and up/down, read from the supervisor's state at each scrape."""

    def __init__(self, figures: Callable[[], Mapping[str, ServiceFigures]]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            SERVICE_RESTARTS, "Times the supervisor restarted a crashed service process.", labels=["service"]
        )
        up = GaugeMetricFamily(SERVICE_UP, "1 while a service process is serving, else 0.", labels=["service"])
        for name, figures in sorted(self.figures().items()):
            restarts.add_metric([name], figures.restarts)
            up.add_metric([name], 1.0 if figures.serving else 0.0)
        yield restarts
        yield up


def multiprocess_registry(path: Path, *extra: Collector) -> CollectorRegistry:
    """A registry that adds up every process's values under ``path`` (plus ``extra`` collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=str(path))
    for collector in extra:
        registry.register(collector)
    return registry
