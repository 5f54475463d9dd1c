"""The job a submitter runs, read from a job.toml document (docs/JOBS.md lists every key).

Top-level keys name the job and how it is run (``name``, ``id``, ``bid``, ``retries``,
``timeout_seconds``); tables: ``[executor]`` (class and name of an executor the workers
configure), ``[resources]`` (what one lease asks for), ``[config]`` (the job's config, handed
to the executor as job.json's ``config``), ``[network]`` (the gateway, this peer's listen
address, the bus topic and the allocation timings). Strict, like the reference scheduler's
job.toml: unknown keys and wrong TOML types are refused naming the key.
"""

from __future__ import annotations

import math
import tomllib
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    ValidationError,
)

from tendril.core.config import Address, AddressList, OptionalAddress, config_error
from tendril.core.errors import ErrorKind
from tendril.core.ids import JOB_ID, PEER_ID
from tendril.submit.errors import SubmitError, SubmitReason

MAX_NAME_CHARS = 40  # job ids are <name>-<8 hex>-a<attempt>: at most 64 characters
MAX_RETRIES = 100


def _name(value: str) -> str:
    if not JOB_ID.valid(value) or len(value) > MAX_NAME_CHARS:
        raise ValueError(f"must be 1-{MAX_NAME_CHARS} letters, digits, '.', '_' or '-'")
    return value


def _peer_id(value: str) -> str:
    if not PEER_ID.valid(value):
        raise ValueError(f"must be a peer id: {PEER_ID.rule}")
    return value


def _finite(value: Any, key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{key} is {value}: the job's config travels as JSON, which has no NaN or infinity")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite(v, f"{key}[{i}]")
    elif not isinstance(value, str | int | float | bool | dict | list):
        raise ValueError(
            f"{key} is a {type(value).__name__}: the job's config holds strings, numbers, booleans, "
            "arrays and tables only"
        )


def _config(value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        _finite(item, key)
    return value


class _Table(BaseModel):
    # NOTE: strict: TOML already types every value, so "8" for a number is a mistake to report.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ExecutorSection(_Table):
    """The executor the job runs (a worker.toml [[executors]] entry of the workers)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    executor_class: str = Field(alias="class", min_length=1)
    name: str = Field(min_length=1)


class ResourcesSection(_Table):
    """Resources asked for the job's lease."""

    cpu: NonNegativeFloat = 1.0
    memory_gib: NonNegativeFloat = 0.5
    storage_gib: NonNegativeFloat = 0.0
    gpu: NonNegativeInt = 0


class NetworkSection(_Table):
    """Where the network is and how offers are sought."""

    gateway: AddressList = "127.0.0.1:50050"  # the network's gateway(s), comma-separated (`--gateway` overrides it)
    listen: Address = "127.0.0.1:0"  # this peer's AllocationService (offers arrive here); port 0: a free port
    advertise_address: OptionalAddress = ""  # what workers dial; empty: the bound listen address
    topic: str = Field("tendril/worker", min_length=1)
    request_deadline_seconds: PositiveFloat = 10.0  # a published request is void after this
    republish_seconds: PositiveFloat = 3.0  # publish again while no offer was taken
    allocation_timeout_seconds: PositiveFloat = 120.0  # give up (NO_OFFER) when no offer was taken by then
    offer_window_seconds: Annotated[float, Field(gt=0, le=0.4)] = 0.2  # offers gathered before the best is taken


class JobFile(_Table):
    """A job.toml of `tendril jobs submit`."""

    name: Annotated[str, AfterValidator(_name)] = "job"
    id: Annotated[str, AfterValidator(_peer_id)] = "submitter"
    bid: PositiveFloat = 100.0
    retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 2
    timeout_seconds: NonNegativeFloat = 0.0
    executor: ExecutorSection
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    config: Annotated[dict[str, Any], AfterValidator(_config)] = Field(default_factory=dict)
    network: NetworkSection = Field(default_factory=NetworkSection)


def bad_job_file(message: str) -> SubmitError:
    return SubmitError(ErrorKind.INVALID_ARGUMENT, message, reason=SubmitReason.BAD_JOB_FILE)


def parse_job_file(data: dict[str, Any], *, source: str = "job.toml") -> JobFile:
    """A JobFile from a parsed TOML document; BAD_JOB_FILE naming the key when it breaks the schema."""
    try:
        return JobFile.model_validate(data)
    except ValidationError as exc:
        raise bad_job_file(config_error(exc, JobFile, noun=f"{source} key").message) from exc


def load_job_text(text: str, *, source: str = "job.toml") -> JobFile:
    """A JobFile from job.toml text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise bad_job_file(f"{source} is not valid TOML: {exc}") from exc
    return parse_job_file(data, source=source)
