"""The job a reference scheduler runs, read from job.toml (see deploy/job.toml for every key).

Tables: ``[scheduler]`` (identity, addresses, output), ``[allocation]`` (how many workers, bid,
resources per role), ``[data]`` (which data set), ``[training]`` (DiLoCo: rounds, inner steps,
outer optimizer, codec) with ``[training.inner]`` (AdamW) and ``[training.model]`` (the task,
and either ``[training.model.config]``: ``model_type`` + transformers config kwargs, or a
``source`` checkpoint URI) and ``[training.finetune]`` (a LoRA adapter on the source checkpoint:
only the adapter trains and travels), and ``[evaluation]`` (held-out evaluation and export). The tables
are strict pydantic models: unknown keys, wrong TOML types (a string where a number belongs)
and values out of range are refused, naming the key and the accepted values. Every value is
passed on as written: 0 (an outer momentum, a weight decay, a seed) reaches the jobs as 0.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from tendril.core import codecs
from tendril.core.codecs import CODECS
from tendril.core.config import Address, AddressList, OptionalAddress, config_error, read_toml
from tendril.core.errors import ConfigError
from tendril.core.ids import PEER_ID, RUN_ID

# NOTE: tendril_models.tasks and .spec import no torch: a scheduler reads job.toml without it.
from tendril_models.errors import ModelError
from tendril_models.finetune import FinetuneSpec
from tendril_models.spec import DEFAULT_CONFIG, ModelSpec
from tendril_models.tasks import TASK_NAMES

# NOTE: a run id of job.toml names the run's jobs too (<run_id>-ps1, <run_id>-t12), which must
# stay job ids (64 characters): hence at most 48 of the run id's 128.
MAX_RUN_ID_CHARS = 48

DEFAULT_MODEL: dict[str, Any] = dict(DEFAULT_CONFIG)
_MODEL_KEYS = ("task", "source", "sha256", "trust_remote_code", "config")
OLD_MODEL_FORM = (
    "no longer takes GPT-2 kwargs ({keys}): move them to the table [training.model.config] and add "
    'model_type = "gpt2" there (or set training.model.source to a checkpoint); [training.model] takes {accepted}'
)


def _run_id(value: str) -> str:
    if value and (not RUN_ID.valid(value) or len(value) > MAX_RUN_ID_CHARS):
        raise ValueError(f"must be empty or a run id of at most {MAX_RUN_ID_CHARS} characters: {RUN_ID.rule}")
    return value


def _peer_id(value: str) -> str:
    if not PEER_ID.valid(value):
        raise ValueError(f"must be a peer id: {PEER_ID.rule}")
    return value


class _Table(BaseModel):
    # NOTE: strict: TOML already types every value, so "8" for a number is a mistake to report.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SchedulerSection(_Table):
    """Identity and addresses of the scheduler peer."""

    id: Annotated[str, AfterValidator(_peer_id)] = "scheduler"
    listen: Address = "127.0.0.1:50060"  # AllocationService + CoordinationService; port 0 picks a free port
    advertise_address: OptionalAddress = ""  # what workers dial; empty: the bound listen address
    # BusService/RegistryService of the network: host:port, or several comma-separated (used in order; the
    # scheduler moves to the next when the one in use fails)
    gateway: AddressList = "127.0.0.1:50050"
    out_dir: str = "scheduler-out"  # metrics.jsonl and model.safetensors go here
    finish_timeout_seconds: PositiveFloat = 60.0  # wait this long for jobs to end after the last round


class ResourcesSpec(_Table):
    """Resources asked for one lease."""

    cpu: NonNegativeFloat = 1.0
    memory_gib: NonNegativeFloat = 1.0
    storage_gib: NonNegativeFloat = 1.0
    gpu: NonNegativeInt = 0


class AllocationSection(_Table):
    """How workers are found."""

    workers: PositiveInt = 2  # training workers (the parameter server is one more lease)
    bid: PositiveFloat = 100.0  # price per unit of score offered to workers
    topic: str = Field("tendril/worker", min_length=1)
    request_deadline_seconds: PositiveFloat = 10.0  # a published request is void after this
    republish_seconds: PositiveFloat = 3.0  # publish again while workers are missing
    timeout_seconds: PositiveFloat = 300.0  # give up when the first full set is not found by then
    max_lost: NonNegativeInt = 6  # give up after losing this many leases/jobs (a job that fails everywhere)
    worker: ResourcesSpec = Field(default_factory=ResourcesSpec)
    parameter_server: ResourcesSpec = Field(
        default_factory=lambda: ResourcesSpec(cpu=0.5, memory_gib=0.5, storage_gib=1.0)
    )
    # the held-out evaluation job's lease (one per run; it may share a worker with the parameter server)
    eval: ResourcesSpec = Field(default_factory=lambda: ResourcesSpec(cpu=0.5, memory_gib=1.0, storage_gib=1.0))


class DataSection(_Table):
    """Where the training data comes from."""

    node: OptionalAddress = "127.0.0.1:50070"  # DataNodeService address; empty: find it in the gateway registry
    dataset_id: str = ""  # empty: the node's only data set


class InnerSection(_Table):
    """Inner AdamW of every worker."""

    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.1
    warmup_steps: NonNegativeInt = 20
    batch_size: PositiveInt = 8


class ModelSection(_Table):
    """The model: a task, and a config to build it from or a source checkpoint to load."""

    task: Literal[TASK_NAMES] = "causal-lm"  # type: ignore[valid-type]  # tendril_models.TASK_NAMES
    source: str = ""  # checkpoint folder or archive URI (file://, http(s)://, tendril-data://); empty: from config
    sha256: str = ""  # of the source archive (of a folder's model.safetensors); empty: not checked
    trust_remote_code: bool = False  # run model code shipped with the checkpoint (the worker must allow it too)
    # model_type + transformers config kwargs; a gpt2 config's keys replace those of DEFAULT_MODEL
    config: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_MODEL))

    @model_validator(mode="before")
    @classmethod
    def _refuse_the_old_form(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = sorted(set(data) - set(_MODEL_KEYS))
            if old:
                raise ValueError(OLD_MODEL_FORM.format(keys=", ".join(old), accepted=", ".join(_MODEL_KEYS)))
            if "source" in data and data.get("source") and "config" not in data:
                data = {**data, "config": {}}  # a checkpoint brings its own config
        return data

    @model_validator(mode="after")
    def _valid_spec(self) -> ModelSection:
        if self.config and self.config.get("model_type", "gpt2") == "gpt2":
            self.config = {**DEFAULT_MODEL, **self.config}
        try:
            self.spec()
        except ModelError as exc:
            raise ValueError(exc.message.removeprefix("model: ")) from exc
        return self

    def spec(self) -> ModelSpec:
        """The ModelSpec every training job gets."""
        return ModelSpec.from_dict(self.model_dump())


class FinetuneSection(_Table):
    """A LoRA adapter (peft) on the ``[training.model]`` checkpoint: the base stays frozen and only
    the adapter's weights are θ (pushed, averaged, pulled). See docs/FINETUNE.md."""

    method: Literal["lora"] = "lora"
    r: PositiveInt = 8  # the adapter's rank
    alpha: PositiveFloat = 16.0  # the adapter's output is scaled by alpha / r
    dropout: float = Field(0.05, ge=0, lt=1)  # dropout on the adapter's input
    # module names to adapt, "all-linear" (tendril_models.finetune.ALL_LINEAR), or []: peft's default for the
    # architecture (else all-linear)
    target_modules: list[str] | Literal["all-linear"] = Field(default_factory=list)
    bias: Literal["none", "all", "lora_only"] = "none"  # which biases train with the adapter
    merge: bool = False  # also export the merged model to <out_dir>/model/ (the adapter goes to <out_dir>/adapter/)

    def spec(self) -> FinetuneSpec:
        """The FinetuneSpec every training and eval job gets."""
        return FinetuneSpec.from_dict(self.model_dump())


OUTER_MOMENTUM = 0.9  # training.outer_momentum's default with blocking sync
DELAYED_OUTER_MOMENTUM = 0.5  # ... and with overlapped or streaming sync


class TrainingSection(_Table):
    """The DiLoCo run."""

    run_id: Annotated[str, AfterValidator(_run_id)] = ""  # empty: "<scheduler id>-<unix time>"
    rounds: PositiveInt = 4
    inner_steps: PositiveInt = 50  # H: batches the average worker runs per round
    seed: int = 0  # every worker builds θ0 from this seed
    codec: Literal[CODECS] = "fp32"  # type: ignore[valid-type]  # pseudo-gradient wire codec, a registry name
    round_timeout_seconds: PositiveFloat = 30.0  # after the first commit a quorum may close a round
    quorum: PositiveInt = 1  # fewest workers that may close a round once the timeout passed
    outer_lr: PositiveFloat = 0.7
    # unset: 0.9 with blocking sync, DELAYED_OUTER_MOMENTUM (0.5) with overlapped and streaming (docs/WAN.md)
    outer_momentum: float | None = Field(None, ge=0, lt=1)
    # accelerate; auto: bf16 on a GPU that has it, else fp16 on a GPU, no on a CPU
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    torch_threads: NonNegativeInt = 0  # per executor; 0 = torch's default
    keep_updates: bool = False  # executors keep each round's outer update file (for inspection)
    # workers add what the codec dropped from a round's Δ to the next Δ; "auto": on for int4 and sparse
    error_feedback: bool | Literal["auto"] = "auto"
    # sparse codec: decay of each worker's error-feedback accumulator (it replaces outer momentum)
    sparse_beta: float = Field(0.95, ge=0, le=1)
    # int8/int4 values per scale, sparse values per chunk (64 kept of each: 4096 is 1.56 %); 0: the codec's default
    codec_block_size: NonNegativeInt = 0
    # blocking: wait for each round's update; overlapped: train on while it travels; streaming: θ in
    # fragments, each synced at its own point of a round while training goes on (docs/WAN.md "Sync modes")
    sync: Literal["blocking", "overlapped", "streaming"] = "blocking"
    fragments: PositiveInt = 2  # streaming sync: θ's fragments (contiguous groups of tensors of about equal bytes)
    # overlapped/streaming: where a worker trains on from while a round's update travels; eager: the outer
    # step applied to its fresh Δ mixed with the others' of the round before; local: its local θ (docs/WAN.md)
    delayed_proxy: Literal["eager", "local"] = "eager"
    inner: InnerSection = Field(default_factory=InnerSection)
    model: ModelSection = Field(default_factory=ModelSection)
    finetune: FinetuneSection | None = None  # absent: the whole model trains

    @model_validator(mode="after")
    def _finetune_needs_a_checkpoint(self) -> TrainingSection:
        if self.finetune is not None and not self.model.source:
            raise ValueError(
                "[training.finetune] trains a LoRA adapter on a checkpoint: set training.model.source to the base "
                "model (a tendril-data://, file:// or http(s):// URI of a save_pretrained folder or archive)"
            )
        return self

    @model_validator(mode="after")
    def _default_outer_momentum(self) -> TrainingSection:
        # NOTE: a delayed outer step (overlapped, streaming) overshot on short runs with momentum 0.9
        # now and then, with either proxy; 0.8 did not on the demo's model, but did in the lab at
        # 100 Mbit/s, where a round's sync outlasts its inner steps and the rounds grow longer
        # (held-out loss up by 1.0 after round 2); 0.5 did not (docs/WAN.md "Outer momentum").
        if self.outer_momentum is None:
            self.outer_momentum = OUTER_MOMENTUM if self.sync == "blocking" else DELAYED_OUTER_MOMENTUM
        return self

    @model_validator(mode="after")
    def _valid_block_size(self) -> TrainingSection:
        if self.codec_block_size:
            try:
                codecs.get(self.codec).check_block_size(self.codec_block_size)
            except codecs.CodecError as exc:
                raise ValueError(f"codec_block_size {self.codec_block_size} does not suit {self.codec}: {exc}") from exc
        return self


class EvaluationSection(_Table):
    """Held-out evaluation and export of the trained model."""

    enabled: bool = True  # place an eval job when the data set has a held-out split (eval_slices)
    every_rounds: PositiveInt = 1  # evaluate θ after every N-th round (the last round always)
    export_every_rounds: NonNegativeInt = 0  # also export <out_dir>/model/ every N rounds; 0: only at the end
    export: bool = True  # write <out_dir>/model/ (save_pretrained + the data set's tokenizer) at the end
    batch_size: PositiveInt = 8  # held-out examples per forward pass
    max_examples: NonNegativeInt = 0  # evaluate at most this many held-out examples; 0: all of them
    max_lost: NonNegativeInt = 2  # after losing more eval jobs than this the run goes on without evaluation
    timeout_seconds: PositiveFloat = 300.0  # after the last round, wait this long for its evaluation


class JobConfig(_Table):
    """The whole job.toml."""

    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    allocation: AllocationSection = Field(default_factory=AllocationSection)
    data: DataSection = Field(default_factory=DataSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)


def parse_job_config(data: dict[str, Any], *, origin: Mapping[str, str] | None = None) -> JobConfig:
    """A JobConfig from a parsed TOML document, validated (``origin``: see :func:`config_error`)."""
    try:
        config = JobConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, JobConfig, noun="job config key", origin=origin) from exc
    workers, quorum = config.allocation.workers, config.training.quorum
    if quorum > workers:
        raise ConfigError(
            f"job config key training.quorum must be between 1 and allocation.workers ({workers}) (got {quorum})",
            key="training.quorum",
        )
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
    data = read_toml(file, what="job config", hint="see deploy/job.toml for an example")
    for key, text in (overrides or {}).items():
        _override(data, key, text)
    return parse_job_config(data, origin={"": str(file), **dict.fromkeys(overrides or {}, "--set")})
