"""The training job config (dispatch ``config`` of class train / name diloco), validated.

Keys (docs/ARCHITECTURE.md "Training job config"): ``run_id``, ``parameter_server``,
``codec``, ``round_timeout_seconds``, ``rounds``, ``seed``, ``model`` (a
:class:`tendril_models.ModelSpec`: task + config or source; GPT-2 config kwargs, the old form,
are read as a GPT-2 config), ``data`` (a :class:`tendril_models.DataSpec`, the data set's
manifest summary; without it a v1 causal-lm data set of the model's ``vocab_size`` and
``n_positions``), ``inner`` (``lr``, ``weight_decay``, ``warmup_steps``, ``batch_size``),
``mixed_precision`` (``auto``: bf16 on a GPU that has it, else fp16 on a GPU, no on a CPU);
and optional ``torch_threads`` (0: torch's default), ``processes`` (0: one per GPU of the
job's lease, one on a CPU; n: n processes, DDP inner steps, gloo on a CPU),
``receive_timeout_seconds`` (how long a
worker waits for a round's update; 0: 10 × round timeout, at least 120 s) and
``keep_updates`` (keep every round's outer update file under updates/, and the synchronized θ
as params/synced.safetensors, for inspection),
``finetune`` (a :class:`tendril_models.finetune.FinetuneSpec`: a LoRA adapter on the ``model``
checkpoint; θ, what is pushed and pulled, is then the adapter only),
``error_feedback`` (send Δ plus what the codec dropped from last round's Δ; unset: on for
int4 and sparse, off otherwise; see :mod:`tendril_diloco.feedback`), ``sparse_beta`` (the
sparse codec's accumulator decay, 0.95), ``codec_block_size`` (int8/int4 block, sparse
chunk; 0: the codec's default; the bridge encodes with the same), ``sync`` (``blocking``,
``overlapped`` or ``streaming``, see :mod:`tendril_diloco.sync`), ``fragments`` (streaming
sync: θ's fragments, each synced on its own; 1 otherwise), ``delayed_proxy`` (overlapped and
streaming sync: where a worker trains on from while a round's update travels; ``eager``, the
default: the run's outer step applied to its own fresh Δ mixed with the others' of the round
before, ``local``: its local θ; see :mod:`tendril_diloco.eager`) and ``outer_lr`` and
``outer_momentum`` (the run's outer Nesterov SGD, which the eager proxy applies; without them
the proxy is ``local``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tendril_diloco.eager import DELAYED_PROXIES
from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_diloco.feedback import DEFAULT_BETA, default_on
from tendril_diloco.sync import SYNC_MODES
from tendril_models import DataSpec, ModelError, ModelSpec
from tendril_models.finetune import FinetuneSpec

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclasses.dataclass(frozen=True)
class InnerConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    batch_size: int = 8


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    run_id: str
    parameter_server: str
    rounds: int
    seed: int = 0
    # NOTE: the wire codec is the worker's business (its bridge encodes what this executor
    # sends and refuses a codec it does not know), so it is kept as the string given.
    codec: str = "fp32"
    round_timeout_seconds: float = 30.0
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    data: DataSpec | None = None  # None: a v1 data set (see data_spec)
    inner: InnerConfig = dataclasses.field(default_factory=InnerConfig)
    mixed_precision: str = "no"
    torch_threads: int = 0
    processes: int = 0
    receive_timeout_seconds: float = 0.0
    keep_updates: bool = False
    finetune: FinetuneSpec | None = None  # None: the whole model trains
    error_feedback: bool | None = None  # None: the codec's default (feedback.default_on)
    sparse_beta: float = DEFAULT_BETA
    codec_block_size: int = 0
    sync: str = "blocking"
    fragments: int = 1  # streaming sync: θ's fragments (tendril_diloco.fragments)
    delayed_proxy: str = "eager"  # overlapped/streaming: eager or local (tendril_diloco.eager)
    outer_lr: float | None = None  # the run's outer step (the eager proxy's); None: not given
    outer_momentum: float | None = None

    @property
    def feedback(self) -> bool:
        """Whether this worker runs error feedback."""
        if self.error_feedback is not None:
            return self.error_feedback
        return default_on(self.codec)

    @property
    def data_spec(self) -> DataSpec:
        """The job's data set summary; a config from an older scheduler has none: a v1 token data set."""
        if self.data is not None:
            return self.data
        config = self.model.model_config
        seq_len = config.get("n_positions") or config.get("max_position_embeddings") or 0
        return DataSpec.from_manifest({"vocab_size": config.get("vocab_size", 0), "seq_len": seq_len})

    @property
    def receive_timeout(self) -> float:
        if self.receive_timeout_seconds > 0:
            return self.receive_timeout_seconds
        return max(120.0, 10 * self.round_timeout_seconds)


def _bad(message: str) -> ExecutorError:
    return ExecutorError(f"job config: {message}", reason=ExecutorReason.BAD_JOB_CONFIG)


def _number(raw: Mapping[str, Any], key: str, default: Any, kind: type) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{key} must be a number, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise _bad(f"{key} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def parse_config(raw: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from the dispatch config; a clear error names the first bad key."""
    run_id, ps = raw.get("run_id"), raw.get("parameter_server")
    if not isinstance(run_id, str) or not run_id:
        raise _bad("run_id (the DiLoCo run's id at the parameter server) is required")
    if not isinstance(ps, str) or ":" not in ps:
        raise _bad(f"parameter_server must be the parameter server's host:port, got {ps!r}")
    codec = raw.get("codec", "fp32")
    if not isinstance(codec, str) or not codec:
        raise _bad(f"codec must be the name of a wire codec, got {codec!r}")
    if "rounds" not in raw:
        raise _bad("rounds is required")
    feedback = raw.get("error_feedback")
    if feedback is not None and not isinstance(feedback, bool):
        raise _bad(f"error_feedback must be true or false, got {feedback!r}")
    inner_raw = raw.get("inner", {})
    model_raw, data_raw = raw.get("model", {}), raw.get("data")
    if not isinstance(inner_raw, Mapping) or not isinstance(model_raw, Mapping):
        raise _bad("inner and model must be objects")
    try:
        # NOTE: a config that travelled as a protobuf Struct has only floats; the specs make
        # integral ones ints again (model sizes must be ints).
        model = ModelSpec.from_dict(model_raw)
        data = None if data_raw is None else DataSpec.from_dict(data_raw)
        finetune = FinetuneSpec.from_dict(raw["finetune"]) if "finetune" in raw else None
    except ModelError as exc:
        raise ExecutorError(f"job config: {exc.message}", reason=ExecutorReason.BAD_MODEL_CONFIG) from exc
    unknown = set(inner_raw) - {f.name for f in dataclasses.fields(InnerConfig)}
    if unknown:
        raise _bad(f"unknown inner keys {sorted(unknown)}")
    defaults = InnerConfig()
    inner = InnerConfig(
        lr=_number(inner_raw, "lr", defaults.lr, float),
        weight_decay=_number(inner_raw, "weight_decay", defaults.weight_decay, float),
        warmup_steps=_number(inner_raw, "warmup_steps", defaults.warmup_steps, int),
        batch_size=_number(inner_raw, "batch_size", defaults.batch_size, int),
    )
    config = TrainConfig(
        run_id=run_id,
        parameter_server=ps,
        rounds=_number(raw, "rounds", 1, int),
        seed=_number(raw, "seed", 0, int),
        codec=codec,
        round_timeout_seconds=_number(raw, "round_timeout_seconds", 30.0, float),
        model=model,
        data=data,
        inner=inner,
        mixed_precision=str(raw.get("mixed_precision", "no")),
        torch_threads=_number(raw, "torch_threads", 0, int),
        processes=_number(raw, "processes", 0, int),
        receive_timeout_seconds=_number(raw, "receive_timeout_seconds", 0.0, float),
        keep_updates=bool(raw.get("keep_updates", False)),
        finetune=finetune,
        error_feedback=feedback,
        sparse_beta=_number(raw, "sparse_beta", DEFAULT_BETA, float),
        codec_block_size=_number(raw, "codec_block_size", 0, int),
        sync=str(raw.get("sync", "blocking")),
        fragments=_number(raw, "fragments", 1, int),
        delayed_proxy=str(raw.get("delayed_proxy", "eager")),
        outer_lr=None if raw.get("outer_lr") is None else _number(raw, "outer_lr", None, float),
        outer_momentum=None if raw.get("outer_momentum") is None else _number(raw, "outer_momentum", None, float),
    )
    checks = [
        (config.rounds >= 1, "rounds must be >= 1"),
        (config.mixed_precision in MIXED_PRECISION, f"mixed_precision must be one of {MIXED_PRECISION}"),
        (config.round_timeout_seconds > 0, "round_timeout_seconds must be > 0"),
        (inner.lr > 0, "inner.lr must be > 0"),
        (inner.weight_decay >= 0, "inner.weight_decay must be >= 0"),
        (inner.warmup_steps >= 0, "inner.warmup_steps must be >= 0"),
        (inner.batch_size >= 1, "inner.batch_size must be >= 1"),
        (config.torch_threads >= 0, "torch_threads must be >= 0"),
        (0 <= config.sparse_beta <= 1, "sparse_beta must be between 0 and 1"),
        (config.codec_block_size >= 0, "codec_block_size must be >= 0"),
        (0 <= config.processes <= 64, "processes must be between 0 (one per GPU) and 64"),
        (
            finetune is None or bool(model.source),
            "finetune needs model.source: a LoRA adapter trains on a checkpoint (the base model)",
        ),
        (config.sync in SYNC_MODES, f"sync must be one of {SYNC_MODES}, got {config.sync!r}"),
        (config.fragments >= 1, "fragments must be >= 1"),
        (
            config.delayed_proxy in DELAYED_PROXIES,
            f"delayed_proxy must be one of {DELAYED_PROXIES}, got {config.delayed_proxy!r}",
        ),
        (config.outer_lr is None or config.outer_lr > 0, "outer_lr must be > 0"),
        (config.outer_momentum is None or 0 <= config.outer_momentum < 1, "outer_momentum must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise _bad(message)
    return config
