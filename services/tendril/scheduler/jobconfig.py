"""The job a reference scheduler runs, read from job.toml (see deploy/job.toml for every key).

Tables: ``[scheduler]`` (identity, addresses, output), ``[allocation]`` (how many workers, bid,
resources per role), ``[data]`` (which data set), ``[training]`` (DiLoCo: rounds, inner steps,
outer optimizer, codec) with ``[training.inner]`` (AdamW) and ``[training.model]`` (GPT-2
config kwargs). Unknown keys and bad values are refused with the key named.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tendril.core.config import split_address
from tendril.core.errors import ConfigError

CODECS = ("fp32", "bf16", "int8")
MIXED_PRECISION = ("no", "fp16", "bf16")
_RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,48}$")

DEFAULT_MODEL: dict[str, Any] = {"n_layer": 2, "n_head": 2, "n_embd": 64}


@dataclasses.dataclass
class SchedulerSection:
    """Identity and addresses of the scheduler peer."""

    id: str = "scheduler"
    listen: str = "127.0.0.1:50060"  # AllocationService + CoordinationService; port 0 picks a free port
    advertise_address: str = ""  # what workers dial; empty: the bound listen address
    gateway: str = "127.0.0.1:50050"  # BusService/RegistryService of the network
    out_dir: str = "scheduler-out"  # metrics.jsonl and model.safetensors go here
    finish_timeout_seconds: float = 60.0  # wait this long for jobs to end after the last round


@dataclasses.dataclass
class ResourcesSpec:
    """Resources asked for one lease."""

    cpu: float = 1.0
    memory_gib: float = 1.0
    storage_gib: float = 1.0
    gpu: int = 0


@dataclasses.dataclass
class AllocationSection:
    """How workers are found."""

    workers: int = 2  # training workers (the parameter server is one more lease)
    bid: float = 100.0  # price per unit of score offered to workers
    topic: str = "tendril/worker"
    request_deadline_seconds: float = 10.0  # a published request is void after this
    republish_seconds: float = 3.0  # publish again while workers are missing
    timeout_seconds: float = 300.0  # give up when the first full set is not found by then
    max_lost: int = 6  # give up after losing this many leases/jobs (a job that fails everywhere)
    worker: ResourcesSpec = dataclasses.field(default_factory=ResourcesSpec)
    parameter_server: ResourcesSpec = dataclasses.field(
        default_factory=lambda: ResourcesSpec(cpu=0.5, memory_gib=0.5, storage_gib=1.0)
    )


@dataclasses.dataclass
class DataSection:
    """Where the training data comes from."""

    node: str = "127.0.0.1:50070"  # DataNodeService address; empty: find it in the gateway registry
    dataset_id: str = ""  # empty: the node's only data set


@dataclasses.dataclass
class InnerSection:
    """Inner AdamW of every worker."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    batch_size: int = 8


@dataclasses.dataclass
class TrainingSection:
    """The DiLoCo run."""

    run_id: str = ""  # empty: "<scheduler id>-<unix time>"
    rounds: int = 4
    inner_steps: int = 50  # H: batches the average worker runs per round
    seed: int = 0  # every worker builds θ0 from this seed
    codec: str = "fp32"  # pseudo-gradient wire codec
    round_timeout_seconds: float = 30.0  # after the first commit a quorum may close a round
    quorum: int = 1  # fewest workers that may close a round once the timeout passed
    outer_lr: float = 0.7
    outer_momentum: float = 0.9
    mixed_precision: str = "no"
    torch_threads: int = 0  # per executor; 0 = torch's default
    keep_updates: bool = False  # executors keep each round's outer update file (for inspection)
    inner: InnerSection = dataclasses.field(default_factory=InnerSection)
    model: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MODEL))


@dataclasses.dataclass
class JobConfig:
    """The whole job.toml."""

    scheduler: SchedulerSection = dataclasses.field(default_factory=SchedulerSection)
    allocation: AllocationSection = dataclasses.field(default_factory=AllocationSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    training: TrainingSection = dataclasses.field(default_factory=TrainingSection)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"job config key {key} must be a table", key=key)
        return _build(annotation, value, key)
    if typing.get_origin(annotation) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"job config key {key} must be a table", key=key)
        return dict(value)
    if annotation is bool or isinstance(value, bool):
        if annotation is bool and isinstance(value, bool):
            return value
        raise ConfigError(f"job config key {key}: expected {annotation.__name__}, got {value!r}", key=key)
    if annotation is int and isinstance(value, int):
        return value
    if annotation is float and isinstance(value, int | float):
        return float(value)
    if annotation is str and isinstance(value, str):
        return value
    raise ConfigError(f"job config key {key}: expected {annotation.__name__}, got {value!r}", key=key)


def _build(cls: Any, table: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in names:
            raise ConfigError(f"unknown job config key {key!r}; known here: {', '.join(sorted(names))}", key=key)
        values[name] = _coerce(value, hints[name], key)
    return cls(**values)


def parse_job_config(data: dict[str, Any]) -> JobConfig:
    """A JobConfig from a parsed TOML document, validated."""
    config: JobConfig = _build(JobConfig, data, "")
    model = dict(DEFAULT_MODEL)
    model.update(config.training.model)
    config.training.model = model
    validate(config)
    return config


def _override(data: dict[str, Any], key: str, text: str) -> None:
    """Set dotted ``key`` in the TOML document; ``text`` is a TOML value (bare words are strings)."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    *tables, name = key.split(".")
    node = data
    for table in tables:
        node = node.setdefault(table, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {table} is not a table", key=key)
    node[name] = value


def load_job_config(path: str | Path, *, overrides: Mapping[str, str] | None = None) -> JobConfig:
    """Read job.toml, apply ``overrides`` ({"training.rounds": "2"}), validate."""
    file = Path(path).expanduser()
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"job config {file} does not exist (see deploy/job.toml for an example)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"job config {file} is not valid TOML: {exc}") from exc
    for key, text in (overrides or {}).items():
        _override(data, key, text)
    return parse_job_config(data)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"job config key {key} {message}", key=key)


def validate(config: JobConfig) -> None:
    """Refuse values no run could work with, naming the key."""
    s, a, t = config.scheduler, config.allocation, config.training
    addresses = [("scheduler.listen", s.listen), ("scheduler.gateway", s.gateway)]
    if config.data.node:
        addresses.append(("data.node", config.data.node))
    for key, address in addresses:
        try:
            split_address(address)
        except ValueError as exc:
            raise ConfigError(f"job config key {key}: {exc}", key=key) from exc
    if s.advertise_address:
        try:
            split_address(s.advertise_address)
        except ValueError as exc:
            raise ConfigError(
                f"job config key scheduler.advertise_address: {exc}", key="scheduler.advertise_address"
            ) from exc
    _check(bool(s.id), "scheduler.id", "must not be empty")
    _check(s.finish_timeout_seconds > 0, "scheduler.finish_timeout_seconds", "must be > 0")
    _check(a.workers >= 1, "allocation.workers", "must be >= 1")
    _check(a.bid > 0, "allocation.bid", "must be > 0")
    _check(a.max_lost >= 0, "allocation.max_lost", "must be >= 0")
    _check(bool(a.topic), "allocation.topic", "must not be empty")
    for key in ("request_deadline_seconds", "republish_seconds", "timeout_seconds"):
        _check(getattr(a, key) > 0, f"allocation.{key}", "must be > 0")
    for role in ("worker", "parameter_server"):
        spec: ResourcesSpec = getattr(a, role)
        for field in ("cpu", "memory_gib", "storage_gib", "gpu"):
            _check(getattr(spec, field) >= 0, f"allocation.{role}.{field}", "must be >= 0")
    _check(not t.run_id or bool(_RUN_ID.match(t.run_id)), "training.run_id", "must be 1-48 of [A-Za-z0-9._-]")
    _check(t.rounds >= 1, "training.rounds", "must be >= 1")
    _check(t.inner_steps >= 1, "training.inner_steps", "must be >= 1")
    _check(t.codec in CODECS, "training.codec", f"must be one of {', '.join(CODECS)}")
    _check(t.mixed_precision in MIXED_PRECISION, "training.mixed_precision", f"must be one of {MIXED_PRECISION}")
    _check(t.round_timeout_seconds > 0, "training.round_timeout_seconds", "must be > 0")
    _check(1 <= t.quorum <= a.workers, "training.quorum", f"must be between 1 and allocation.workers ({a.workers})")
    _check(t.outer_lr > 0, "training.outer_lr", "must be > 0")
    _check(0 <= t.outer_momentum < 1, "training.outer_momentum", "must be in [0, 1)")
    _check(t.torch_threads >= 0, "training.torch_threads", "must be >= 0")
    _check(t.inner.lr > 0, "training.inner.lr", "must be > 0")
    _check(t.inner.weight_decay >= 0, "training.inner.weight_decay", "must be >= 0")
    _check(t.inner.warmup_steps >= 0, "training.inner.warmup_steps", "must be >= 0")
    _check(t.inner.batch_size >= 1, "training.inner.batch_size", "must be >= 1")
