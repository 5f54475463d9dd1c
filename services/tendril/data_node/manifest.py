"""The data set manifest (``manifest.json``): what a prepared data set holds, and its checks.

A prepared data set is a folder::

    manifest.json
    slice-00000.safetensors   the training split: every tensor of "tensors", first dim = examples
    slice-00001.safetensors
    eval-00000.safetensors    the held-out split (never assigned to a training job)
    tokenizer.tar             assets: the tokenizer (or image processor) directory as a tar
    model.tar                 and checkpoints added with `tendril data add-model` (kind "model")

Format ``tendril-dataset/2`` names the task and the tensors of every slice (dtype and
per-example shape); format ``tendril-dataset/1`` (one ``input_ids`` tensor, causal-lm, no
held-out split, no assets) is still read.

Data set ids and file names are plain file names (letters, digits, ``.``, ``_``, ``-``; no
leading dot), so a name taken from a request can never walk out of the data set folder.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.ids import is_sha256_hex, is_valid_name
from tendril.data_node.errors import DataNodeError, DatasetReason

MANIFEST_NAME = "manifest.json"
FORMAT_V1 = "tendril-dataset/1"
FORMAT = "tendril-dataset/2"
TENSOR_NAME = "input_ids"
# NOTE: int32 halves the bytes of int64 and holds any real vocabulary; executors convert to
# int64 (torch.long) when they build a batch.
DTYPE = "int32"
TASKS = ("causal-lm", "masked-lm", "seq2seq-lm", "sequence-classification", "image-classification")
ASSET_KINDS = ("tokenizer", "processor", "model")
TOKENIZER_ASSET = "tokenizer.tar"
PROCESSOR_ASSET = "processor.tar"
_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16", "float32", "float64", "bool")


def slice_name(index: int) -> str:
    return f"slice-{index:05d}.safetensors"


def eval_slice_name(index: int) -> str:
    return f"eval-{index:05d}.safetensors"


@dataclasses.dataclass(frozen=True)
class SliceEntry:
    """One slice file of a data set (training or held-out)."""

    name: str
    size_bytes: int
    sha256: str
    num_sequences: int  # examples in the file (sequences for text)


@dataclasses.dataclass(frozen=True)
class AssetEntry:
    """A file served beside the slices: the tokenizer, image processor or a checkpoint directory as a tar."""

    name: str
    size_bytes: int
    sha256: str
    kind: str  # "tokenizer" | "processor" | "model"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named tensor of every slice: its dtype and its shape per example."""

    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


def _v1_tensors(seq_len: int) -> dict[str, TensorSpec]:
    return {TENSOR_NAME: TensorSpec(DTYPE, (seq_len,))}


@dataclasses.dataclass(frozen=True)
class DatasetManifest:
    """Everything ``manifest.json`` says about a data set."""

    dataset_id: str
    tokenizer: str  # "bytes" | "bpe" | "hf" ("" for image data sets); v1 data sets: "bytes" or "hf:NAME"
    vocab_size: int
    eot_id: int
    seq_len: int
    slices: tuple[SliceEntry, ...]
    dtype: str = DTYPE  # v1: the dtype of input_ids
    tensor: str = TENSOR_NAME  # v1: the one tensor's name
    tokenizer_sha256: str = ""
    documents: int = 0  # source documents (files or records) read
    source_bytes: int = 0  # source bytes read (text files)
    task: str = "causal-lm"
    tensors: Mapping[str, TensorSpec] = dataclasses.field(default_factory=dict)
    eval_slices: tuple[SliceEntry, ...] = ()
    assets: tuple[AssetEntry, ...] = ()
    pad_id: int = -1  # -1: no padding token
    mask_id: int = -1  # the tokenizer's mask token (masked-lm); -1: none
    num_labels: int = 0
    label_names: tuple[str, ...] = ()
    format: str = FORMAT

    def __post_init__(self) -> None:
        if not self.tensors:
            object.__setattr__(self, "tensors", _v1_tensors(self.seq_len))

    @property
    def num_sequences(self) -> int:
        """Examples in the training split."""
        return sum(s.num_sequences for s in self.slices)

    @property
    def eval_sequences(self) -> int:
        """Examples in the held-out split."""
        return sum(s.num_sequences for s in self.eval_slices)

    @property
    def total_bytes(self) -> int:
        return sum(s.size_bytes for s in self.slices)

    def slice(self, name: str) -> SliceEntry | None:
        """A training slice by name."""
        for entry in self.slices:
            if entry.name == name:
                return entry
        return None

    def file(self, name: str) -> SliceEntry | AssetEntry | None:
        """Any file the data node serves by name: a training or held-out slice, or an asset."""
        for entry in (*self.slices, *self.eval_slices, *self.assets):
            if entry.name == name:
                return entry
        return None

    def asset(self, kind: str) -> AssetEntry | None:
        return next((a for a in self.assets if a.kind == kind), None)

    @property
    def files(self) -> tuple[SliceEntry | AssetEntry, ...]:
        return (*self.slices, *self.eval_slices, *self.assets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dataset_id": self.dataset_id,
            "task": self.task,
            "tokenizer": self.tokenizer,
            "tokenizer_sha256": self.tokenizer_sha256,
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "pad_id": self.pad_id,
            "mask_id": self.mask_id,
            "seq_len": self.seq_len,
            "num_labels": self.num_labels,
            "label_names": list(self.label_names),
            "tensors": {name: spec.to_dict() for name, spec in self.tensors.items()},
            "num_sequences": self.num_sequences,
            "eval_sequences": self.eval_sequences,
            "total_bytes": self.total_bytes,
            "documents": self.documents,
            "source_bytes": self.source_bytes,
            "slices": [dataclasses.asdict(s) for s in self.slices],
            "eval_slices": [dataclasses.asdict(s) for s in self.eval_slices],
            "assets": [dataclasses.asdict(a) for a in self.assets],
        }

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _bad(folder: Path, what: str) -> DataNodeError:
    return DataNodeError(
        ErrorKind.FAILED_PRECONDITION,
        f"{folder / MANIFEST_NAME}: {what}. Prepare the data set again with `tendril data prepare`.",
        reason=DatasetReason.BAD_MANIFEST,
        metadata={"path": str(folder / MANIFEST_NAME)},
    )


def _file_fields(folder: Path, where: str, raw: Any) -> tuple[str, int, str]:
    if not isinstance(raw, dict):
        raise _bad(folder, f"{where} is not an object")
    name, size, sha = raw.get("name"), raw.get("size_bytes"), raw.get("sha256")
    if not isinstance(name, str) or not is_valid_name(name):
        raise _bad(folder, f"{where}.name {name!r} is not a plain file name")
    if not isinstance(size, int) or size <= 0:
        raise _bad(folder, f"{where}.size_bytes must be a positive integer")
    if not isinstance(sha, str) or not is_sha256_hex(sha):
        raise _bad(folder, f"{where}.sha256 must be 64 lowercase hex digits")
    return name, size, sha


def _parse_slice(folder: Path, where: str, raw: Any) -> SliceEntry:
    name, size, sha = _file_fields(folder, where, raw)
    count = raw.get("num_sequences")
    if not isinstance(count, int) or count <= 0:
        raise _bad(folder, f"{where}.num_sequences must be a positive integer")
    return SliceEntry(name, size, sha, count)


def _parse_asset(folder: Path, where: str, raw: Any) -> AssetEntry:
    name, size, sha = _file_fields(folder, where, raw)
    kind = raw.get("kind")
    if kind not in ASSET_KINDS:
        raise _bad(folder, f"{where}.kind {kind!r} is not one of {', '.join(ASSET_KINDS)}")
    return AssetEntry(name, size, sha, kind)


def _parse_tensors(folder: Path, raw: Any) -> dict[str, TensorSpec]:
    if not isinstance(raw, dict) or not raw:
        raise _bad(folder, "tensors must be a non-empty object: name -> {dtype, shape}")
    tensors: dict[str, TensorSpec] = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or spec.get("dtype") not in _DTYPES:
            raise _bad(folder, f"tensors.{name}.dtype must be one of {', '.join(_DTYPES)}")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise _bad(folder, f"tensors.{name}.shape must be a list of positive integers")
        tensors[name] = TensorSpec(spec["dtype"], tuple(shape))
    return tensors


def _int(folder: Path, raw: Mapping[str, Any], key: str, *, minimum: int, default: int | None = None) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad(folder, f"{key} must be an integer >= {minimum}")
    return value


def load_manifest(folder: Path) -> DatasetManifest:
    """Read and check ``folder/manifest.json`` (format 1 or 2); raises DataNodeError saying what is wrong."""
    path = folder / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataNodeError(
            ErrorKind.NOT_FOUND,
            f"{folder} is not a prepared data set: {MANIFEST_NAME} is missing. "
            "Run `tendril data prepare SRC OUT` and serve OUT.",
            reason=DatasetReason.MANIFEST_MISSING,
            metadata={"path": str(path)},
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise _bad(folder, f"cannot be read as JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") not in (FORMAT, FORMAT_V1):
        raise _bad(folder, f"format is not {FORMAT!r} (or {FORMAT_V1!r})")
    v1 = raw["format"] == FORMAT_V1
    dataset_id = raw.get("dataset_id")
    if not isinstance(dataset_id, str) or not is_valid_name(dataset_id):
        raise _bad(folder, f"dataset_id {dataset_id!r} is not a plain name")
    task = raw.get("task", "causal-lm")
    if task not in TASKS:
        raise _bad(folder, f"task {task!r} is not one of {', '.join(TASKS)}")
    text = task != "image-classification"
    vocab_size = _int(folder, raw, "vocab_size", minimum=1 if text else 0)
    eot_id = _int(folder, raw, "eot_id", minimum=0 if text else -1)
    seq_len = _int(folder, raw, "seq_len", minimum=1 if text else 0)
    slices_raw = raw.get("slices")
    if not isinstance(slices_raw, list) or not slices_raw:
        raise _bad(folder, "slices must be a non-empty list")
    slices = tuple(_parse_slice(folder, f"slices[{i}]", s) for i, s in enumerate(slices_raw))
    eval_raw = [] if v1 else raw.get("eval_slices", [])
    assets_raw = [] if v1 else raw.get("assets", [])
    if not isinstance(eval_raw, list) or not isinstance(assets_raw, list):
        raise _bad(folder, "eval_slices and assets must be lists")
    eval_slices = tuple(_parse_slice(folder, f"eval_slices[{i}]", s) for i, s in enumerate(eval_raw))
    assets = tuple(_parse_asset(folder, f"assets[{i}]", a) for i, a in enumerate(assets_raw))
    names = [f.name for f in (*slices, *eval_slices, *assets)]
    if len(set(names)) != len(names):
        raise _bad(folder, "file names repeat across slices, eval_slices and assets")
    if MANIFEST_NAME in names:
        raise _bad(folder, f"a slice or asset may not be named {MANIFEST_NAME}")
    tensors = _v1_tensors(seq_len) if v1 else _parse_tensors(folder, raw.get("tensors"))
    label_names = raw.get("label_names", [])
    if not isinstance(label_names, list) or not all(isinstance(n, str) for n in label_names):
        raise _bad(folder, "label_names must be a list of strings")
    return DatasetManifest(
        dataset_id=dataset_id,
        tokenizer=str(raw.get("tokenizer", "")),
        tokenizer_sha256=str(raw.get("tokenizer_sha256", "")),
        vocab_size=vocab_size,
        eot_id=eot_id,
        seq_len=seq_len,
        slices=slices,
        dtype=str(raw.get("dtype", DTYPE)),
        tensor=str(raw.get("tensor", TENSOR_NAME)),
        documents=int(raw.get("documents", 0)),
        source_bytes=int(raw.get("source_bytes", 0)),
        task=task,
        tensors=tensors,
        eval_slices=eval_slices,
        assets=assets,
        pad_id=_int(folder, raw, "pad_id", minimum=-1, default=-1),
        mask_id=_int(folder, raw, "mask_id", minimum=-1, default=-1),
        num_labels=_int(folder, raw, "num_labels", minimum=0, default=0),
        label_names=tuple(label_names),
        format=str(raw["format"]),
    )
