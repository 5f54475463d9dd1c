"""What travels in a job's config (JSON-safe): the model to train and the data set it trains on.

``ModelSpec``: a task and either a ``config`` (``model_type`` + kwargs for
``AutoConfig.for_model``) or a ``source`` URI of a checkpoint directory or archive (``file://``,
``http(s)://``, or ``tendril-data://<dataset_id>/<asset name>``: an archive the data node of the
run's data set serves, see :mod:`tendril_sdk.uris`). The old
form, GPT-2 kwargs with no ``task``/``config``/``source`` key, reads as
``{"task": "causal-lm", "config": {"model_type": "gpt2", **kwargs}}``.

``DataSpec``: the data set manifest's summary (v1 and v2 manifests) that every job is given:
its task, the named tensors of a slice with dtype and per-example shape, and the tokenizer's
sizes the model config is filled from.
"""

from __future__ import annotations

import dataclasses
import math
import types
import urllib.parse
from collections.abc import Mapping
from typing import Any

from tendril_models.archive import is_archive
from tendril_models.errors import ModelError, ModelReason
from tendril_models.tasks import get_task
from tendril_sdk.uris import DATA_SCHEME, parse_data_uri

__all__ = ["DEFAULT_CONFIG", "DTYPES", "DataSpec", "ModelSpec"]

# The model trained when a job names neither a config nor a source: a GPT-2 that trains on a CPU.
DEFAULT_CONFIG: Mapping[str, Any] = types.MappingProxyType(
    {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64}
)
SOURCE_SCHEMES = ("file", "http", "https", DATA_SCHEME)
# Tensor dtypes a slice may hold (safetensors names, lower case).
DTYPES = ("int8", "uint8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64", "bool")
_SPEC_KEYS = frozenset({"task", "config", "source", "sha256", "trust_remote_code"})
_HEX = frozenset("0123456789abcdef")


def _bad(message: str) -> ModelError:
    return ModelError(f"model: {message}", reason=ModelReason.BAD_MODEL_CONFIG)


def _plain(value: Any) -> Any:
    """A JSON value with integral floats made ints (a config that travelled as a protobuf Struct has only floats)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model of a run: what to build, or where to load it from."""

    task: str = "causal-lm"
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # model_type + kwargs (when no source)
    source: str = ""  # URI of a checkpoint directory or archive (.tar, .tar.gz, .tgz, .zip)
    sha256: str = ""  # of the archive (or, for a directory, of its model.safetensors); empty: not checked
    trust_remote_code: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelSpec:
        """A checked spec from a job config's ``model`` object; ModelError(BAD_MODEL_CONFIG) names the bad key."""
        if not isinstance(raw, Mapping):
            raise _bad(f"must be an object, got {type(raw).__name__}")
        raw = _plain(raw)
        if raw and not (_SPEC_KEYS & raw.keys()):
            # NOTE: the old form (GPT-2 config kwargs) that schedulers before task/config/source sent.
            raw = {"task": "causal-lm", "config": {"model_type": "gpt2", **raw}}
        unknown = sorted(set(raw) - _SPEC_KEYS)
        if unknown:
            raise _bad(f"unknown keys {unknown}; the keys are {sorted(_SPEC_KEYS)} (model kwargs go under config)")
        task = raw.get("task", "causal-lm")
        get_task(task)
        config, source, sha256 = raw.get("config", {}), raw.get("source", ""), raw.get("sha256", "")
        trust = raw.get("trust_remote_code", False)
        if not isinstance(config, Mapping):
            raise _bad(f"config must be an object (model_type + kwargs), got {config!r}")
        if not isinstance(source, str) or not isinstance(sha256, str):
            raise _bad("source and sha256 must be strings")
        if not isinstance(trust, bool):
            raise _bad(f"trust_remote_code must be true or false, got {trust!r}")
        if source and config:
            raise _bad("give either config (a model built from scratch) or source (a checkpoint), not both")
        if source:
            parsed = urllib.parse.urlparse(source)
            if parsed.scheme == DATA_SCHEME:
                try:
                    asset = parse_data_uri(source).name
                except ValueError as exc:
                    raise _bad(f"source {exc}") from exc
                if not is_archive(asset):
                    raise _bad(
                        f"source {source!r}: asset {asset!r} is not an archive; a data node serves a checkpoint as "
                        "one tar (`tendril data add-model` writes model.tar)"
                    )
            elif parsed.scheme not in SOURCE_SCHEMES or (parsed.scheme != "file" and not parsed.netloc):
                raise _bad(
                    f"source {source!r} must be a file:///absolute/path, http://, https:// or "
                    f"{DATA_SCHEME}://<dataset_id>/<asset name> URI"
                )
        elif sha256:
            raise _bad("sha256 is the checksum of the source; it needs a source")
        if sha256 and (len(sha256) != 64 or not set(sha256.lower()) <= _HEX):
            raise _bad(f"sha256 must be 64 hex digits, got {sha256[:80]!r}")
        if config and not isinstance(config.get("model_type"), str):
            raise _bad(
                "config.model_type is required: the transformers model type, e.g. gpt2, llama, bert, t5, vit "
                f"(got {config.get('model_type')!r})"
            )
        return cls(task=task, config=dict(config), source=source, sha256=sha256.lower(), trust_remote_code=trust)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "config": dict(self.config),
            "source": self.source,
            "sha256": self.sha256,
            "trust_remote_code": self.trust_remote_code,
        }

    @property
    def model_config(self) -> Mapping[str, Any]:
        """The config kwargs to build from (DEFAULT_CONFIG when neither config nor source is given)."""
        if self.source:
            return {}
        return self.config or DEFAULT_CONFIG


def _int(raw: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = _plain(raw.get(key, default))
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(
            f"data set: {key} must be an integer >= {minimum}, got {value!r}", reason=ModelReason.BAD_DATA_SPEC
        )
    return value


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The data set summary a job is given (the manifest without its slice list)."""

    task: str
    tensors: Mapping[str, Mapping[str, Any]]  # name -> {"dtype": "int32", "shape": [seq_len]} (per example)
    vocab_size: int = 0
    seq_len: int = 0
    num_labels: int = 0
    pad_id: int = -1  # -1: sequences are packed, nothing is padding
    eot_id: int = -1
    label_names: tuple[str, ...] = ()
    mask_id: int = -1  # the tokenizer's mask token (masked-lm); -1: none

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> DataSpec:
        """The summary of a ``manifest.json`` (``tendril-dataset/1`` or ``/2``).

        A v1 manifest (no ``tensors``) is a causal-lm data set of one tensor ``input_ids``.
        """
        if not isinstance(manifest, Mapping):
            raise ModelError("data set: the manifest must be an object", reason=ModelReason.BAD_DATA_SPEC)
        seq_len = _int(manifest, "seq_len", 0, minimum=0)
        tensors = manifest.get("tensors")
        if tensors is None:
            name = manifest.get("tensor") or "input_ids"
            tensors = {name: {"dtype": manifest.get("dtype") or "int32", "shape": [seq_len]}}
        return cls.from_dict(
            {
                "task": manifest.get("task") or "causal-lm",
                "tensors": tensors,
                "vocab_size": manifest.get("vocab_size", 0),
                "seq_len": seq_len,
                "num_labels": manifest.get("num_labels", 0),
                "pad_id": manifest.get("pad_id", -1),
                "eot_id": manifest.get("eot_id", -1),
                "label_names": manifest.get("label_names", ()),
                "mask_id": manifest.get("mask_id", -1),
            }
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DataSpec:
        """A checked summary from a job config's ``data`` object; ModelError(BAD_DATA_SPEC) names the bad key."""
        if not isinstance(raw, Mapping):
            raise ModelError("data set: the data summary must be an object", reason=ModelReason.BAD_DATA_SPEC)
        task = raw.get("task", "causal-lm")
        get_task(task)
        tensors_raw = raw.get("tensors") or {}
        if not isinstance(tensors_raw, Mapping) or not tensors_raw:
            raise ModelError(
                "data set: tensors must name the slices' tensors (name -> {dtype, shape})",
                reason=ModelReason.BAD_DATA_SPEC,
            )
        tensors: dict[str, dict[str, Any]] = {}
        for name, info in tensors_raw.items():
            info = _plain(info)
            if not isinstance(info, Mapping) or info.get("dtype") not in DTYPES:
                raise ModelError(
                    f"data set: tensor {name!r} needs a dtype, one of {', '.join(DTYPES)} (got {info!r})",
                    reason=ModelReason.BAD_DATA_SPEC,
                )
            shape = info.get("shape", [])
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ModelError(
                    f"data set: tensor {name!r} needs a shape of non-negative integers (per example), got {shape!r}",
                    reason=ModelReason.BAD_DATA_SPEC,
                )
            tensors[str(name)] = {"dtype": info["dtype"], "shape": list(shape)}
        labels = raw.get("label_names") or ()
        if not isinstance(labels, list | tuple) or not all(isinstance(x, str) for x in labels):
            raise ModelError("data set: label_names must be a list of strings", reason=ModelReason.BAD_DATA_SPEC)
        return cls(
            task=task,
            tensors=tensors,
            vocab_size=_int(raw, "vocab_size", 0, minimum=0),
            seq_len=_int(raw, "seq_len", 0, minimum=0),
            num_labels=_int(raw, "num_labels", 0, minimum=0),
            pad_id=_int(raw, "pad_id", -1, minimum=-1),
            eot_id=_int(raw, "eot_id", -1, minimum=-1),
            label_names=tuple(labels),
            mask_id=_int(raw, "mask_id", -1, minimum=-1),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "tensors": {name: {"dtype": t["dtype"], "shape": list(t["shape"])} for name, t in self.tensors.items()},
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "num_labels": self.num_labels,
            "pad_id": self.pad_id,
            "eot_id": self.eot_id,
            "label_names": list(self.label_names),
            "mask_id": self.mask_id,
        }
