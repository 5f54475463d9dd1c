"""Worker configuration, layered: defaults -> TOML file -> ``TENDRIL_*`` env -> CLI flags.

Every key has a dotted name ``section.key`` (e.g. ``lease.renewable_seconds``); its env
variable is ``TENDRIL_SECTION_KEY`` (``TENDRIL_LEASE_RENEWABLE_SECONDS``) and its CLI flag is
``--set section.key=value``. Lists in env/flags are comma-separated. ``[[executors]]`` tables
come from the file only.
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
from typing import Any

from tendril.core.errors import ConfigError

ENV_PREFIX = "TENDRIL_"


def env_var(key: str) -> str:
    """The environment variable of a dotted config key: lease.renewable_seconds -> TENDRIL_LEASE_RENEWABLE_SECONDS."""
    return f"{ENV_PREFIX}{key.replace('.', '_')}".upper()


@dataclasses.dataclass
class WorkerSection:
    """Identity and directories of the worker."""

    id: str = ""  # empty: "worker-<hostname>"
    state_dir: str = ""  # empty: $XDG_STATE_HOME/tendril/<id> or ~/.local/state/tendril/<id>
    work_dir: str = ""  # empty: <state_dir>/work
    advertise_host: str = ""  # host others use to reach this worker; empty: the listen host
    port_offset: int = 0  # added to every default service port (several workers on one host)


@dataclasses.dataclass
class GatewaySection:
    """Which gateway the worker joins."""

    address: str = ""  # empty: start an embedded gateway on embedded_listen
    embedded_listen: str = "127.0.0.1:50050"
    registry_ttl_seconds: float = 15.0


@dataclasses.dataclass
class ResourcesSection:
    """Resources the worker offers; a negative value means "detect"."""

    cpu: float = -1.0
    memory_gib: float = -1.0
    storage_gib: float = -1.0
    gpu: int = -1


@dataclasses.dataclass
class ArbiterSection:
    """How requests are filtered, scored and offered."""

    listen: str = "127.0.0.1:50051"
    topic: str = "tendril/worker"
    strategy: str = "whole"  # "whole" or "flexible"
    price: float = 100.0
    floor: float = 100.0
    window_size: int = 100
    window_seconds: float = 0.2
    offer_timeout_seconds: float = 0.5
    allowed_schedulers: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LeaseSection:
    """Lease times."""

    listen: str = "127.0.0.1:50052"
    temporary_seconds: float = 0.5
    renewable_seconds: float = 10.0
    prune_interval_seconds: float = 0.25


@dataclasses.dataclass
class JobSection:
    """Executor processes."""

    listen: str = "127.0.0.1:50053"
    max_concurrent_jobs: int = 4
    default_timeout_seconds: float = 0.0  # 0: no limit
    kill_grace_seconds: float = 5.0
    keep_work_dirs: bool = False


@dataclasses.dataclass
class DataFetcherSection:
    """Data slice cache and prefetch."""

    listen: str = "127.0.0.1:50054"
    cache_bytes: int = 2 * 1024**3
    prefetch: int = 2


@dataclasses.dataclass
class ParameterServerSection:
    """DiLoCo aggregation."""

    listen: str = "127.0.0.1:50055"


@dataclasses.dataclass
class SupervisorSection:
    """Starting, watching and stopping the service processes."""

    start_timeout_seconds: float = 30.0
    stop_timeout_seconds: float = 10.0
    restart_backoff_seconds: float = 0.5
    restart_backoff_max_seconds: float = 10.0


@dataclasses.dataclass
class TelemetrySection:
    """Logs and metrics."""

    log_level: str = "info"
    log_format: str = "auto"  # "auto", "json" or "console"
    metrics_listen: str = "127.0.0.1:9464"


@dataclasses.dataclass
class TlsSection:
    """mTLS between hosts: all three files set = TLS on every TCP server and channel; all empty = plaintext."""

    ca_file: str = ""  # PEM of the CA that signed every peer's certificate (`tendril certs init`)
    cert_file: str = ""  # this peer's certificate, CN = its peer id (`tendril certs issue NAME`)
    key_file: str = ""  # its private key (keep it 0600)
    require_client_cert: bool = True  # false: servers ask callers for no certificate (server-only TLS)

    FILE_KEYS = ("ca_file", "cert_file", "key_file")

    @property
    def enabled(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file)


@dataclasses.dataclass
class ExecutorConfig:
    """One executor the worker can run. ``command`` is argv; no shell.

    Placeholders in argv: {SOCKET_PATH}, {WORK_DIR}, {JOB_JSON} (also set as env vars) and
    {PYTHON} (this worker's Python interpreter).
    """

    executor_class: str
    name: str
    command: list[str]
    env: dict[str, str] = dataclasses.field(default_factory=dict)


def default_executors() -> list[ExecutorConfig]:
    """Executors shipped with Tendril."""
    py = "{PYTHON}"
    return [
        ExecutorConfig("example", "echo", [py, "-m", "tendril_example", "--socket", "{SOCKET_PATH}"]),
        ExecutorConfig("train", "diloco", [py, "-m", "tendril_diloco", "--socket", "{SOCKET_PATH}"]),
        ExecutorConfig(
            "aggregate",
            "diloco",
            [py, "-m", "tendril.paramserver.executor", "--socket", "{SOCKET_PATH}"],
        ),
    ]


@dataclasses.dataclass
class WorkerConfig:
    """The whole worker configuration."""

    worker: WorkerSection = dataclasses.field(default_factory=WorkerSection)
    gateway: GatewaySection = dataclasses.field(default_factory=GatewaySection)
    resources: ResourcesSection = dataclasses.field(default_factory=ResourcesSection)
    arbiter: ArbiterSection = dataclasses.field(default_factory=ArbiterSection)
    lease: LeaseSection = dataclasses.field(default_factory=LeaseSection)
    job: JobSection = dataclasses.field(default_factory=JobSection)
    data_fetcher: DataFetcherSection = dataclasses.field(default_factory=DataFetcherSection)
    paramserver: ParameterServerSection = dataclasses.field(default_factory=ParameterServerSection)
    supervisor: SupervisorSection = dataclasses.field(default_factory=SupervisorSection)
    telemetry: TelemetrySection = dataclasses.field(default_factory=TelemetrySection)
    tls: TlsSection = dataclasses.field(default_factory=TlsSection)
    executors: list[ExecutorConfig] = dataclasses.field(default_factory=default_executors)

    # -- derived values -------------------------------------------------------------------

    SERVICE_SECTIONS = ("arbiter", "lease", "job", "data_fetcher", "paramserver")

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


# -- layering ----------------------------------------------------------------------------


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a TOML/env/flag value into the field's type, or raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true/false, got {value!r}")
        if annotation is int:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if annotation is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {type(value).__name__}")
            return value
        if origin is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError("expected a list")
            (item_type,) = typing.get_args(annotation)
            return [_coerce(v, item_type, key) for v in value]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {key}: {exc}", key=key) from exc
    return value


def _fields(section_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_type)}


def _apply(config: WorkerConfig, key: str, value: Any) -> None:
    section_name, sep, field_name = key.partition(".")
    if not sep or section_name == "executors" or not hasattr(config, section_name):
        raise ConfigError(f"unknown config key {key!r} (expected section.key, e.g. lease.renewable_seconds)", key=key)
    section = getattr(config, section_name)
    fields = _fields(type(section))
    if field_name not in fields:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config key {key!r}; section [{section_name}] has: {known}", key=key)
    setattr(section, field_name, _coerce(value, fields[field_name], key))


def _parse_executors(raw: Any) -> list[ExecutorConfig]:
    if not isinstance(raw, list):
        raise ConfigError("[[executors]] must be a list of tables", key="executors")
    out = []
    for i, item in enumerate(raw):
        key = f"executors[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{key} must be a table", key=key)
        unknown = set(item) - {"class", "name", "command", "env"}
        if unknown:
            raise ConfigError(f"{key}: unknown keys {sorted(unknown)}", key=key)
        cls, name, command = item.get("class"), item.get("name"), item.get("command")
        if not isinstance(cls, str) or not cls or not isinstance(name, str) or not name:
            raise ConfigError(f"{key}: 'class' and 'name' must be non-empty strings", key=key)
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            raise ConfigError(f"{key}: 'command' must be a non-empty list of strings (argv, no shell)", key=key)
        env = item.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ConfigError(f"{key}: 'env' must be a table of strings", key=key)
        out.append(ExecutorConfig(cls, name, list(command), dict(env)))
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> WorkerConfig:
    """Build the configuration from the layers; later layers win."""
    config = WorkerConfig()
    if path:
        file = Path(path).expanduser()
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {file} does not exist (create one with `tendril worker init`)") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
        for section_name, table in data.items():
            if section_name == "executors":
                config.executors = _parse_executors(table)
                continue
            if not isinstance(table, dict):
                raise ConfigError(f"{section_name!r} must be a [section] table", key=section_name)
            for field_name, value in table.items():
                _apply(config, f"{section_name}.{field_name}", value)
    environ = os.environ if env is None else env
    for section in dataclasses.fields(config):
        if section.name == "executors":
            continue
        for field_name in _fields(type(getattr(config, section.name))):
            var = f"{ENV_PREFIX}{section.name}_{field_name}".upper()
            if var in environ:
                _apply(config, f"{section.name}.{field_name}", environ[var])
    for key, value in (overrides or {}).items():
        _apply(config, key, value)
    validate(config)
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


def validate(config: WorkerConfig) -> None:
    """Reject values no service could work with, naming the key."""
    for section in (*WorkerConfig.SERVICE_SECTIONS, "gateway.embedded_listen", "telemetry.metrics_listen"):
        key = f"{section}.listen" if "." not in section else section
        sec, _, fld = key.partition(".")
        try:
            split_address(getattr(getattr(config, sec), fld))
        except ValueError as exc:
            raise ConfigError(f"config key {key}: {exc}", key=key) from exc
    if config.gateway.address:
        try:
            split_address(config.gateway.address)
        except ValueError as exc:
            raise ConfigError(f"config key gateway.address: {exc}", key="gateway.address") from exc
    if config.arbiter.strategy not in ("whole", "flexible"):
        raise ConfigError("config key arbiter.strategy must be 'whole' or 'flexible'", key="arbiter.strategy")
    positives = {
        "lease.temporary_seconds": config.lease.temporary_seconds,
        "lease.renewable_seconds": config.lease.renewable_seconds,
        "lease.prune_interval_seconds": config.lease.prune_interval_seconds,
        "arbiter.window_seconds": config.arbiter.window_seconds,
        "arbiter.offer_timeout_seconds": config.arbiter.offer_timeout_seconds,
        "gateway.registry_ttl_seconds": config.gateway.registry_ttl_seconds,
        "job.kill_grace_seconds": config.job.kill_grace_seconds,
    }
    for key, value in positives.items():
        if value <= 0:
            raise ConfigError(f"config key {key} must be > 0 (got {value})", key=key)
    if config.arbiter.window_size < 1:
        raise ConfigError("config key arbiter.window_size must be >= 1", key="arbiter.window_size")
    if config.job.max_concurrent_jobs < 1:
        raise ConfigError("config key job.max_concurrent_jobs must be >= 1", key="job.max_concurrent_jobs")
    if config.data_fetcher.prefetch < 0:
        raise ConfigError("config key data_fetcher.prefetch must be >= 0", key="data_fetcher.prefetch")
    validate_tls(config.tls)
    seen = set()
    for ex in config.executors:
        ident = (ex.executor_class, ex.name)
        if ident in seen:
            raise ConfigError(f"executor {ex.executor_class}/{ex.name} is configured twice", key="executors")
        seen.add(ident)


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
    config = WorkerConfig()
    for section in dataclasses.fields(config):
        if section.name == "executors":
            config.executors = [ExecutorConfig(**e) for e in data.get("executors", [])]
            continue
        for key, value in data.get(section.name, {}).items():
            setattr(getattr(config, section.name), key, value)
    return config


def python_executable() -> str:
    """The interpreter executors of kind {PYTHON} run with."""
    return sys.executable
