"""Worker configuration, layered: defaults -> TOML file -> ``TENDRIL_*`` env -> CLI flags.

Every key has a dotted name ``section.key`` (e.g. ``lease.renewable_seconds``); its env
variable is ``TENDRIL_SECTION_KEY`` (``TENDRIL_LEASE_RENEWABLE_SECONDS``) and its CLI flag is
``--set section.key=value``. Lists in env/flags are comma-separated. ``[[executors]]`` tables
come from the file only.

The sections are pydantic dataclasses: a field holds its type, default, accepted range and
the sentence ``tendril worker init`` writes about it. The layers are merged by hand into one
document that pydantic checks in one pass (docs/ARCHITECTURE.md, "Libraries and why", says
why the layering is not pydantic-settings); :func:`config_error` turns its first error into one line.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from tendril.core.errors import ConfigError
from tendril.core.ids import PEER_ID

ENV_PREFIX = "TENDRIL_"
# NOTE: old section names are refused with the new name (in a file, a variable or a flag)
# rather than read silently: a renamed key must not fall back to its default unnoticed.
RENAMED_SECTIONS = {"leases": "lease", "jobs": "job", "parameter_server": "paramserver"}


def env_var(key: str) -> str:
    """The environment variable of a dotted config key: lease.renewable_seconds -> TENDRIL_LEASE_RENEWABLE_SECONDS."""
    return f"{ENV_PREFIX}{key.replace('.', '_')}".upper()


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" -> (host, port); raises ValueError on a malformed address."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def shift_port(address: str, offset: int) -> str:
    if not offset:
        return address
    host, port = split_address(address)
    return f"{host}:{port + offset}"


def _address(value: str) -> str:
    split_address(value)
    return value


def _comma_list(value: Any) -> Any:
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


def _address_list(value: str) -> str:
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        _address(item)
    return ",".join(items)


def _required(value: str) -> str:
    if not value:
        raise ValueError("give at least one host:port")
    return value


def _redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            "must be a Redis URL: redis://[:password@]host:port/db (rediss:// for TLS, unix:// for a socket)"
        )
    return value


Address = Annotated[str, AfterValidator(_address)]
RedisUrl = Annotated[str, AfterValidator(_redis_url)]
OptionalAddress = Annotated[str, AfterValidator(lambda value: _address(value) if value else value)]
# NOTE: gateways are a comma-separated string, not a TOML list, so a single "host:port" (the
# old form) stays valid as it was; tendril.core.gateways.parse_addresses splits it.
AddressList = Annotated[str, AfterValidator(_address_list), AfterValidator(_required)]
OptionalAddressList = Annotated[str, AfterValidator(_address_list)]
CommaList = Annotated[list[str], BeforeValidator(_comma_list)]


def _absolute_paths(values: list[str]) -> list[str]:
    relative = [v for v in values if not Path(v).expanduser().is_absolute()]
    if relative:
        raise ValueError(f"must list absolute paths, got {', '.join(map(repr, relative))}")
    return [str(Path(v).expanduser()) for v in values]


AbsolutePaths = Annotated[CommaList, AfterValidator(_absolute_paths)]


def _optional_absolute_path(value: str) -> str:
    if value and not Path(value).expanduser().is_absolute():
        raise ValueError(f"must be an absolute path or empty, got {value!r}")
    return str(Path(value).expanduser()) if value else value


OptionalAbsolutePath = Annotated[str, AfterValidator(_optional_absolute_path)]


def _peer_id(value: str) -> str:
    if value and not PEER_ID.valid(value):
        raise ValueError(f"must be empty or a peer id: {PEER_ID.rule}")
    return value


LogLevel = Annotated[
    Literal["debug", "info", "warning", "error"], BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
]
# NOTE: the sentence under each field is its description (pydantic reads attribute docstrings
# from the source): `tendril worker init`, deploy/worker.toml and the README table print it.
SECTION = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


@dataclass(config=SECTION)
class WorkerSection:
    """Identity and directories of the worker."""

    id: Annotated[str, AfterValidator(_peer_id)] = ""
    """Id of this worker in the network (1-128 letters, digits, '.', '_', '-', ':' or '@', starting with a letter or
    digit); empty means worker-<hostname>."""
    state_dir: str = ""
    """Directory for the worker's databases, logs and run files; empty means $XDG_STATE_HOME/tendril/<id> (or
    ~/.local/state/tendril/<id>)."""
    work_dir: str = ""
    """Directory under which each job gets its job-<id>/ folder; empty means <state_dir>/work."""
    advertise_host: str = ""
    """Host name or IP other peers use to reach this worker's services; empty means the listen host."""
    port_offset: int = 0
    """Added to every service listen port (and the metrics port), so several workers can share one host."""


@dataclass(config=SECTION)
class GatewaySection:
    """Which gateway the worker joins."""

    address: OptionalAddressList = ""
    """host:port of the network's gateway to join, or several comma-separated (tried in order; the worker moves to the
    next when the one in use fails); empty starts an embedded gateway on embedded_listen."""
    embedded_listen: Address = "127.0.0.1:50050"
    """Where the embedded gateway listens when gateway.address is empty."""
    registry_ttl_seconds: PositiveFloat = 15.0
    """Lifetime of this worker's registry record; the supervisor refreshes it every third of this time."""
    backend: Literal["memory", "redis"] = "memory"
    """Where the embedded gateway keeps the bus and registry: memory (this process) or redis (gateway.redis_url,
    shared by every gateway on that Redis)."""
    redis_url: RedisUrl = "redis://127.0.0.1:6379/0"
    """Redis of the embedded gateway when gateway.backend is redis (redis://[:password@]host:port/db, rediss:// for
    TLS)."""
    redis_prefix: str = "tendril:"
    """Prefix of every Redis key and channel of the embedded gateway; gateways of one network use the same one."""
    max_record_bytes: Annotated[int, Field(ge=1024, le=4 * 1024 * 1024)] = 65536
    """Embedded gateway: the largest registry record (serialized bytes) a Put may store, in [1024, 4194304]; List pages
    shrink as it grows so that a page always fits the 8 MiB message limit."""
    put_rate: PositiveFloat = 20.0
    """Embedded gateway: registry Puts per second each caller may make on average (token bucket; per gateway process,
    so with several gateways a caller may make this many on each)."""
    put_burst: Annotated[float, Field(ge=1.0)] = 100.0
    """Embedded gateway: registry Puts each caller may make at once before put_rate applies."""
    publish_rate: PositiveFloat = 100.0
    """Embedded gateway: bus Publishes per second each caller may make on average (token bucket; per gateway process,
    so with several gateways a caller may make this many on each)."""
    publish_burst: Annotated[float, Field(ge=1.0)] = 500.0
    """Embedded gateway: bus Publishes each caller may make at once before publish_rate applies."""


@dataclass(config=SECTION)
class ResourcesSection:
    """Resources the worker offers; a negative value means "detect"."""

    cpu: float = -1.0
    """CPU cores offered to schedulers; negative means detect (cores usable by this process)."""
    memory_gib: float = -1.0
    """Memory in GiB offered to schedulers; negative means detect (total RAM)."""
    storage_gib: float = -1.0
    """Disk in GiB offered to schedulers; negative means detect (free space under work_dir)."""
    gpu: int = -1
    """Whole GPUs offered to schedulers; negative means detect through NVML (0 without a driver)."""


@dataclass(config=SECTION)
class ArbiterSection:
    """How requests are filtered, scored and offered."""

    listen: Address = "127.0.0.1:50051"
    """Address the Arbiter (offers, Solicit, ListOffers) listens on."""
    topic: str = "tendril/worker"
    """Gateway bus topic on which schedulers publish resource requests."""
    strategy: Literal["whole", "flexible"] = "whole"
    """'whole' offers the whole worker at max(price, bid); 'flexible' offers just what was asked at the bid."""
    price: NonNegativeFloat = 100.0
    """Price this worker asks; also the price published in its registry record."""
    floor: NonNegativeFloat = 100.0
    """Requests bidding below this are dropped without an offer."""
    window_size: PositiveInt = 100
    """Most requests read before one scoring round."""
    window_seconds: PositiveFloat = 0.2
    """Longest wait for more requests before one scoring round."""
    offer_timeout_seconds: PositiveFloat = 0.5
    """How long a scheduler may take to answer an offer before it is withdrawn."""
    allowed_schedulers: CommaList = Field(default_factory=list)
    """Scheduler ids this worker makes offers to; empty allows every scheduler."""


@dataclass(config=SECTION)
class LeaseSection:
    """Lease times."""

    listen: Address = "127.0.0.1:50052"
    """Address the LeaseService listens on."""
    temporary_seconds: PositiveFloat = 0.5
    """Lifetime of the temporary lease that holds resources while an offer is open."""
    renewable_seconds: PositiveFloat = 10.0
    """Lifetime of an accepted lease; each renewal extends it to now + this."""
    prune_interval_seconds: PositiveFloat = 0.25
    """How often expired leases are pruned (and their jobs cancelled)."""


@dataclass(config=SECTION)
class JobSection:
    """Executor processes."""

    listen: Address = "127.0.0.1:50053"
    """Address the JobService listens on."""
    max_concurrent_jobs: PositiveInt = 4
    """Most jobs running at once; further dispatches are refused (RESOURCE_EXHAUSTED)."""
    default_timeout_seconds: NonNegativeFloat = 0.0
    """Run-time limit of a job that sets none; 0 means no limit."""
    kill_grace_seconds: PositiveFloat = 5.0
    """Time between SIGTERM and SIGKILL when a job is cancelled or its lease ends."""
    keep_work_dirs: bool = False
    """Keep each job-<id>/ folder after the job ends instead of removing it."""
    handoff_dir: OptionalAbsolutePath = "/dev/shm"
    """A folder on a file system held in memory (tmpfs) under which each job of a plain (not container) executor is
    offered handoff/: a folder of its own there, linked from its work dir and removed with it, where the executor
    puts the model-sized files it hands to its bridge every round (Δ, updates) when they fit in memory. Empty, or a
    folder not held in memory: no offer (they go to the work dir's updates/)."""
    fetch_roots: AbsolutePaths = Field(default_factory=list)
    """Directories (absolute paths) whose files an executor may fetch with file:// URIs (FetchResource) besides its
    own work dir; empty: only files inside the job's work dir."""
    allow_remote_code: bool = False
    """Let a job run model code shipped with a checkpoint (transformers trust_remote_code) when the job asks for it;
    passed to executors as env TENDRIL_ALLOW_REMOTE_CODE (1 or 0)."""
    keep_logs_days: NonNegativeFloat = 14.0
    """Days an ended job's saved log (<state_dir>/logs/job-<id>.log) is kept (checked at start and hourly); 0 keeps
    them regardless of age."""
    keep_logs_mib: NonNegativeInt = 1024
    """MiB the saved job logs may take together; beyond it the oldest are deleted (at start and hourly); 0: no
    limit."""
    keep_results_days: NonNegativeFloat = 7.0
    """Days an ended job's kept results (<state_dir>/results/job-<id>/, read with JobService ListResults and
    FetchResult) are kept (checked at start and hourly); 0 keeps them regardless of age."""
    keep_results_mib: NonNegativeInt = 10240
    """MiB the kept job results may take together; beyond it the oldest are deleted (at start and hourly); 0: no
    limit."""
    min_free_mib: NonNegativeInt = 64
    """The JobService takes no jobs (and the worker makes no offers) while less than this many MiB are free under
    worker.state_dir or worker.work_dir; 0: only a failing write counts."""


@dataclass(config=SECTION)
class DataFetcherSection:
    """Data slice cache and prefetch."""

    listen: Address = "127.0.0.1:50054"
    """Address the DataFetcher listens on."""
    cache_bytes: PositiveInt = 2 * 1024**3
    """Byte bound of the data slice cache shared by all jobs (least recently used goes)."""
    prefetch: PositiveInt = 2
    """Slices fetched ahead of the one a job is reading."""


@dataclass(config=SECTION)
class ParameterServerSection:
    """DiLoCo aggregation."""

    listen: Address = "127.0.0.1:50055"
    """Address the ParameterServer listens on."""
    data_listen: OptionalAddress = "127.0.0.1:50056"
    """Address of the ParameterServer's data port: pushes and pulls negotiated in a gRPC call move their bytes over a
    TCP connection there (TLS under [tls]); empty moves them inside the calls."""
    data_streams: Annotated[int, Field(ge=1, le=32)] = 8
    """Most TCP connections one push or pull on a data port uses at once (1 to 32): this parameter server offers at
    most this many per transfer, and this worker's job bridges open at most this many to any parameter server,
    choosing the count by measuring throughput (docs/WAN.md "Parallel streams"); 1: one connection."""
    memory_budget_mib: NonNegativeInt = 0
    """MiB for rounds in memory (pushes received, sums, updates); pushes wait for room. 0: each run's fp32 model + 2
    models."""
    keep_closed_runs_days: NonNegativeFloat = 7.0
    """Days the saved state of a closed or finished run (<state_dir>/paramserver/<run_id>/) is kept after its last
    change (checked at start and hourly); 0 keeps it for good."""


@dataclass(config=SECTION)
class SupervisorSection:
    """Starting, watching and stopping the service processes."""

    start_timeout_seconds: PositiveFloat = 30.0
    """Longest wait for a service process to report SERVING before giving up."""
    stop_timeout_seconds: PositiveFloat = 10.0
    """Budget for a clean stop; processes still alive after it are killed (SIGKILL)."""
    restart_backoff_seconds: PositiveFloat = 0.5
    """Delay before the first restart of a crashed service; doubles each time."""
    restart_backoff_max_seconds: PositiveFloat = Field(
        default=10.0, validate_default=True
    )  # checked against the one above
    """Upper bound of the restart delay."""
    unresponsive_seconds: Annotated[float, Field(ge=2.0)] = 5.0
    """A serving service that answers no health check for this long is killed (SIGKILL) and restarted."""
    log_max_mib: NonNegativeInt = 50
    """A service's log (<state_dir>/logs/<service>.log) is rotated to <service>.log.1 once it reaches this many MiB
    (checked every 30 s); 0 never rotates."""
    log_backups: NonNegativeInt = 3
    """Rotated copies of each service log that are kept (<service>.log.1 is the newest); 0 keeps none."""

    @field_validator("restart_backoff_max_seconds")
    @classmethod
    def _not_below_backoff(cls, value: float, info: ValidationInfo) -> float:
        first = info.data.get("restart_backoff_seconds", 0.0)
        if value < first:
            raise ValueError(f"must be >= supervisor.restart_backoff_seconds ({first}), got {value}")
        return value


@dataclass(config=SECTION)
class TelemetrySection:
    """Logs and metrics."""

    log_level: LogLevel = "info"
    """Lowest log level written: debug, info, warning or error."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """'json', 'console', or 'auto' (console on a terminal, JSON lines otherwise)."""
    metrics_listen: Address = "127.0.0.1:9464"
    """Where the supervisor serves GET /metrics (Prometheus) for all of the worker's processes; see
    docs/OBSERVABILITY.md."""


@dataclass(config=SECTION)
class TlsSection:
    """mTLS between hosts: all three files set = TLS on every TCP server and channel; all empty = plaintext."""

    ca_file: str = ""
    """PEM of the CA that signed every peer's certificate; with cert_file and key_file set, all TCP traffic is mTLS
    (all three empty: plaintext)."""
    cert_file: str = ""
    """This worker's certificate (CN = its worker id), e.g. from `tendril certs issue`."""
    key_file: str = ""
    """The private key of cert_file (keep it mode 0600)."""
    require_client_cert: bool = True
    """Servers refuse callers without a certificate from the CA; false: server-only TLS."""

    FILE_KEYS: ClassVar[tuple[str, ...]] = ("ca_file", "cert_file", "key_file")

    @property
    def enabled(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file)


CONTAINER_RUNTIMES = ("podman", "docker")  # what runtime = "auto" tries, in this order


@dataclass(config=SECTION)
class ContainerConfig:
    """How an executor runs in a container (docs/EXECUTORS.md, "Executors in containers").

    Exactly one of ``image`` and ``rootfs``. The job's work dir is mounted at its own path, the
    network is ``none`` (the bridge is a Unix socket in the work dir), the worker's user owns
    what the executor writes; GPUs, CPUs and memory follow the job's lease.
    """

    runtime: Literal["auto", "podman", "docker"] = "auto"
    """The container runtime: podman, docker, or auto (podman when it answers, else docker)."""
    image: str = ""
    """The image to run the command in (it must be on the host already: nothing is pulled)."""
    rootfs: str = ""
    """Instead of an image (podman only): an absolute path of a root file system to run in; "/" runs on the host's own
    files (as an overlay: writes outside the work dir are thrown away)."""
    runtime_args: list[str] = Field(default_factory=list)
    """Options of the runtime itself, before its subcommand, on every call (e.g. ["--runtime", "runc"])."""
    run_args: list[str] = Field(default_factory=list)
    """More options for `run` (e.g. a read-only mount "-v", "/data:/data:ro"); they come after Tendril's own."""
    init: bool = False
    """Run a small init as PID 1 (--init) that passes signals on and reaps children; without it the executor is PID 1
    and must handle SIGTERM itself."""
    limits: bool = True
    """Give the container the CPUs and memory of the job's lease (--cpus, --memory)."""

    @field_validator("rootfs")
    @classmethod
    def _absolute_rootfs(cls, value: str) -> str:
        if value and not Path(value).is_absolute():
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    def __post_init__(self) -> None:
        if bool(self.image) == bool(self.rootfs):
            raise ValueError("give exactly one of image and rootfs")
        if self.rootfs and self.runtime == "docker":
            raise ValueError('rootfs needs runtime "podman" (or "auto", which then takes podman only)')


@dataclass(config=SECTION)
class ExecutorConfig:
    """One executor the worker can run. ``command`` is argv; no shell.

    Placeholders in argv: {SOCKET_PATH}, {WORK_DIR}, {JOB_JSON} (also set as env vars) and
    {PYTHON} (this worker's Python interpreter). With ``container`` set, the command runs in a
    container (:class:`ContainerConfig`).
    """

    # NOTE: "class" in worker.toml (a Python keyword), executor_class in code and config.json.
    executor_class: str = Field(validation_alias=AliasChoices("class", "executor_class"), min_length=1)
    name: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    container: ContainerConfig | None = None


def default_executors() -> list[ExecutorConfig]:
    """Executors shipped with Tendril."""
    py = "{PYTHON}"
    return [
        ExecutorConfig("example", "echo", [py, "-m", "tendril_example", "--socket", "{SOCKET_PATH}"]),
        ExecutorConfig("train", "diloco", [py, "-m", "tendril_diloco", "--socket", "{SOCKET_PATH}"]),
        ExecutorConfig("aggregate", "diloco", [py, "-m", "tendril_aggregate", "--socket", "{SOCKET_PATH}"]),
        ExecutorConfig("eval", "diloco", [py, "-m", "tendril_diloco.evaluate", "--socket", "{SOCKET_PATH}"]),
        ExecutorConfig("inference", "generate", [py, "-m", "tendril_inference", "--socket", "{SOCKET_PATH}"]),
    ]


@dataclass(config=SECTION)
class WorkerConfig:
    """The whole worker configuration."""

    worker: WorkerSection = Field(default_factory=WorkerSection)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    arbiter: ArbiterSection = Field(default_factory=ArbiterSection)
    lease: LeaseSection = Field(default_factory=LeaseSection)
    job: JobSection = Field(default_factory=JobSection)
    data_fetcher: DataFetcherSection = Field(default_factory=DataFetcherSection)
    paramserver: ParameterServerSection = Field(default_factory=ParameterServerSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    tls: TlsSection = Field(default_factory=TlsSection)
    executors: list[ExecutorConfig] = Field(default_factory=default_executors)
    """Executors this worker can run, one [[executors]] table each; a list here replaces the default list. class and
    name are what schedulers ask for; command is the argv (no shell) with the placeholders {SOCKET_PATH}, {WORK_DIR},
    {JOB_JSON} and {PYTHON} (this worker's interpreter); env adds variables; an optional container table runs the
    command in a container (podman or docker; see docs/EXECUTORS.md)."""

    SERVICE_SECTIONS: ClassVar[tuple[str, ...]] = ("arbiter", "lease", "job", "data_fetcher", "paramserver")

    @field_validator("executors")
    @classmethod
    def _each_executor_once(cls, executors: list[ExecutorConfig]) -> list[ExecutorConfig]:
        seen = set()
        for ex in executors:
            if (ex.executor_class, ex.name) in seen:
                raise ValueError(f"executor {ex.executor_class}/{ex.name} is configured twice")
            seen.add((ex.executor_class, ex.name))
        return executors

    # -- derived values -------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self.worker.id or f"worker-{socket.gethostname()}"

    @property
    def state_dir(self) -> Path:
        if self.worker.state_dir:
            return Path(self.worker.state_dir).expanduser()
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "tendril" / self.worker_id

    @property
    def work_dir(self) -> Path:
        return Path(self.worker.work_dir).expanduser() if self.worker.work_dir else self.state_dir / "work"

    def listen(self, section: str) -> str:
        """Listen address of a service section, port_offset applied."""
        address: str = getattr(self, section).listen
        return shift_port(address, self.worker.port_offset)

    def data_listen(self) -> str:
        """The ParameterServer's data port address, port_offset applied; empty when it has none."""
        address = self.paramserver.data_listen
        return shift_port(address, self.worker.port_offset) if address else ""

    def advertised(self, section: str) -> str:
        """Address other hosts use to reach a service."""
        host, port = split_address(self.listen(section))
        return f"{self.worker.advertise_host or host}:{port}"

    def metrics_listen(self) -> str:
        return shift_port(self.telemetry.metrics_listen, self.worker.port_offset)

    def executor(self, executor_class: str, name: str) -> ExecutorConfig | None:
        for ex in self.executors:
            if ex.executor_class == executor_class and ex.name == name:
                return ex
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_WORKER_CONFIG = TypeAdapter(WorkerConfig)


def pydantic_fields(model: Any) -> dict[str, FieldInfo]:
    """The pydantic fields of a section, a model or a pydantic dataclass, in order."""
    return model.__pydantic_fields__  # type: ignore[no-any-return]


def sections() -> dict[str, Any]:
    """Section name -> its dataclass, in file order (``[[executors]]`` excluded)."""
    return {name: field.annotation for name, field in pydantic_fields(WorkerConfig).items() if name != "executors"}


def config_keys() -> list[str]:
    """Every dotted key of the configuration, in file order (executors excluded)."""
    return [f"{name}.{key}" for name, section in sections().items() for key in pydantic_fields(section)]


def description(key: str) -> str:
    """The sentence on what a dotted key (or ``executors``) does."""
    section, _, name = key.partition(".")
    field = pydantic_fields(sections()[section])[name] if name else pydantic_fields(WorkerConfig)[section]
    return " ".join((field.description or "").split())


# -- errors ------------------------------------------------------------------------------

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _walk(root: Any, loc: tuple[int | str, ...]) -> tuple[Any, Any]:
    """The type at ``loc`` under ``root`` and the pydantic FieldInfo holding it (None, None if lost)."""
    node, field = root, None
    for part in loc:
        if isinstance(part, int):
            node = next(iter(typing.get_args(node)), None)  # list[X] -> X
            continue
        field = pydantic_fields(node).get(part) if hasattr(node, "__pydantic_fields__") else None
        if field is None:
            return None, None
        node = field.annotation
    return node, field


def _input_names(model: Any) -> list[str]:
    """The keys a table of ``model`` accepts (an AliasChoices field by its first alias)."""
    return [
        str(f.validation_alias.choices[0]) if isinstance(f.validation_alias, AliasChoices) else name
        for name, f in (pydantic_fields(model) if hasattr(model, "__pydantic_fields__") else {}).items()
    ]


def config_error(
    exc: ValidationError, root: Any, *, noun: str = "config key", origin: Mapping[str, str] | None = None
) -> ConfigError:
    """One line from pydantic's first error: the dotted key, where its value came from, what to fix.

    ``origin`` maps dotted keys to where their values were set (a file, an env variable,
    ``--set``); the longest one that starts the error's key names the source.
    """
    origin = origin or {}
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    names = [str(part) for part in loc if isinstance(part, str)]
    prefixes = (".".join(names[:end]) for end in range(len(names), -1, -1))
    where = next((origin[p] for p in prefixes if p in origin), "")
    src = f" (from {where})" if where else ""
    kind, value = error["type"], error.get("input")
    got = f" (got {value!r})" if isinstance(value, str | int | float) and kind != "value_error" else ""
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = ", ".join(_input_names(_walk(root, loc[:-1])[0]))
        if len(loc) == 1:
            return ConfigError(f"unknown section [{key}]{src}; the sections are: {known}", key=key)
        parent = key.rpartition(".")[0]
        if isinstance(loc[-2], int):  # a table of a list: executors[0]
            return ConfigError(f"unknown {noun} {key!r}{src}; {parent} has: {known}", key=key)
        return ConfigError(f"unknown {noun} {key!r}{src}; section [{parent}] has: {known}", key=key)
    if kind == "missing":
        return ConfigError(f"{noun} {key}{src} is required", key=key)
    if kind in ("model_type", "dataclass_type", "dict_type"):
        return ConfigError(f"{noun} {key}{src} must be a table{got}", key=key)
    _, field = _walk(root, loc)
    bounds = [
        f"{op} {getattr(m, attr)}"
        for m in (field.metadata if field else [])
        for attr, op in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    if kind in _RANGE_ERRORS and bounds:
        return ConfigError(f"{noun} {key}{src} must be {' and '.join(bounds)}{got}", key=key)
    message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{noun} {key}{src}: {message[:1].lower()}{message[1:]}{got}", key=key)


# -- layering ----------------------------------------------------------------------------


def read_toml(file: Path, *, what: str, hint: str) -> dict[str, Any]:
    """A TOML document, or ConfigError saying the file is missing (``hint``) or broken."""
    try:
        return tomllib.loads(file.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {file} does not exist ({hint})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {file} is not valid TOML: {exc}") from exc


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> WorkerConfig:
    """Build the configuration from the layers; later layers win."""
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def put(key: str, value: Any, where: str) -> None:
        section, _, name = key.partition(".")
        data.setdefault(section, {})[name] = value
        origin[key] = where
        if section not in sections():
            origin[section] = where  # so that "unknown section" names where it was set

    if path:
        file = Path(path).expanduser()
        for section, table in read_toml(file, what="config file", hint="create one with `tendril worker init`").items():
            if section in RENAMED_SECTIONS:
                new = RENAMED_SECTIONS[section]
                raise ConfigError(f"config file {file}: section [{section}] is now [{new}]; rename it", key=section)
            if section == "executors":
                data[section], origin[section] = table, str(file)
            elif isinstance(table, dict):
                for name, value in table.items():
                    put(f"{section}.{name}", value, str(file))
            else:
                raise ConfigError(f"{section!r} in {file} must be a [section] table", key=section)
    environ = os.environ if env is None else env
    for old, new in RENAMED_SECTIONS.items():
        for name in pydantic_fields(sections()[new]):
            if (var := env_var(f"{old}.{name}")) in environ:
                key = f"{new}.{name}"
                raise ConfigError(f"{var}: section [{old}] is now [{new}]; use {env_var(key)}", key=key)
    for key in config_keys():
        if (var := env_var(key)) in environ:
            put(key, environ[var], var)
    for key, value in (overrides or {}).items():
        section, sep, name = key.partition(".")
        if not sep or section == "executors":
            raise ConfigError(
                f"unknown config key {key!r} (expected section.key, e.g. lease.renewable_seconds; "
                "[[executors]] tables come from the config file only)",
                key=key,
            )
        if section in RENAMED_SECTIONS:
            new = f"{RENAMED_SECTIONS[section]}.{name}"
            raise ConfigError(
                f"--set {key}: section [{section}] is now [{RENAMED_SECTIONS[section]}]; use --set {new}", key=new
            )
        put(key, value, "--set")
    try:
        config = _WORKER_CONFIG.validate_python(data)
    except ValidationError as exc:
        raise config_error(exc, WorkerConfig, origin=origin) from exc
    validate_tls(config.tls)
    return config


def parse_set_flags(items: list[str] | None) -> dict[str, str]:
    """``["a.b=1", ...]`` from repeated ``--set`` flags -> {"a.b": "1"}."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected section.key=value", key=key)
        out[key.strip()] = value
    return out


def validate_tls(tls: TlsSection, *, names: Mapping[str, str] | None = None) -> None:
    """All three files or none, each an existing file.

    ``names`` maps ca_file/cert_file/key_file to the key or flag the user set (default
    ``tls.<field>``), so the error names what to fix.
    """
    if not tls.enabled:
        return
    keys = {field: (names or {}).get(field, f"tls.{field}") for field in TlsSection.FILE_KEYS}
    for field, key in keys.items():
        value = getattr(tls, field)
        if not value:
            given = ", ".join(keys[f] for f in TlsSection.FILE_KEYS if getattr(tls, f))
            raise ConfigError(
                f"{key} is empty but {given} is set: mTLS needs all three of {', '.join(keys.values())} "
                "(or none of them for plaintext)",
                key=key,
            )
        if not Path(value).expanduser().is_file():
            raise ConfigError(f"{key} = {value!r}: no such file; give the PEM file `tendril certs` wrote", key=key)


def config_from_json(data: Mapping[str, Any]) -> WorkerConfig:
    """Rebuild a WorkerConfig from :meth:`WorkerConfig.to_dict` output (supervisor -> child)."""
    try:
        return _WORKER_CONFIG.validate_python(data)
    except ValidationError as exc:
        raise config_error(exc, WorkerConfig, origin={"": "config.json"}) from exc


def python_executable() -> str:
    """The interpreter executors of kind {PYTHON} run with."""
    return sys.executable
