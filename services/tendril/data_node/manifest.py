"""The data set manifest (``manifest.json``): what a prepared data set holds, and its checks.

A prepared data set is a folder::

    manifest.json
    slice-00000.safetensors   input_ids [num_sequences, seq_len] int32
    slice-00001.safetensors
    ...

Data set ids and slice names are plain file names (letters, digits, ``.``, ``_``, ``-``; no
leading dot), so a name taken from a request can never walk out of the data set folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.ids import is_sha256_hex, is_valid_name
from tendril.data_node.errors import DataNodeError, DatasetReason

MANIFEST_NAME = "manifest.json"
FORMAT = "tendril-dataset/1"
TENSOR_NAME = "input_ids"
# NOTE: int32 halves the bytes of int64 and holds any real vocabulary; executors convert to
# int64 (torch.long) when they build a batch.
DTYPE = "int32"


def slice_name(index: int) -> str:
    return f"slice-{index:05d}.safetensors"


@dataclasses.dataclass(frozen=True)
class SliceEntry:
    """One slice file of a data set."""

    name: str
    size_bytes: int
    sha256: str
    num_sequences: int


@dataclasses.dataclass(frozen=True)
class DatasetManifest:
    """Everything ``manifest.json`` says about a data set."""

    dataset_id: str
    tokenizer: str
    vocab_size: int
    eot_id: int
    seq_len: int
    slices: tuple[SliceEntry, ...]
    dtype: str = DTYPE
    tensor: str = TENSOR_NAME
    tokenizer_sha256: str = ""
    documents: int = 0  # source files read (the last one possibly cut by --max-bytes)
    source_bytes: int = 0  # source bytes read

    @property
    def num_sequences(self) -> int:
        return sum(s.num_sequences for s in self.slices)

    @property
    def total_bytes(self) -> int:
        return sum(s.size_bytes for s in self.slices)

    def slice(self, name: str) -> SliceEntry | None:
        for entry in self.slices:
            if entry.name == name:
                return entry
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dataset_id": self.dataset_id,
            "tokenizer": self.tokenizer,
            "tokenizer_sha256": self.tokenizer_sha256,
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "seq_len": self.seq_len,
            "tensor": self.tensor,
            "dtype": self.dtype,
            "num_sequences": self.num_sequences,
            "total_bytes": self.total_bytes,
            "documents": self.documents,
            "source_bytes": self.source_bytes,
            "slices": [dataclasses.asdict(s) for s in self.slices],
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


def _parse_slice(folder: Path, i: int, raw: Any) -> SliceEntry:
    if not isinstance(raw, dict):
        raise _bad(folder, f"slices[{i}] is not an object")
    name, size, sha, count = raw.get("name"), raw.get("size_bytes"), raw.get("sha256"), raw.get("num_sequences")
    if not isinstance(name, str) or not is_valid_name(name):
        raise _bad(folder, f"slices[{i}].name {name!r} is not a plain file name")
    if not isinstance(size, int) or size <= 0:
        raise _bad(folder, f"slices[{i}].size_bytes must be a positive integer")
    if not isinstance(sha, str) or not is_sha256_hex(sha):
        raise _bad(folder, f"slices[{i}].sha256 must be 64 lowercase hex digits")
    if not isinstance(count, int) or count <= 0:
        raise _bad(folder, f"slices[{i}].num_sequences must be a positive integer")
    return SliceEntry(name, size, sha, count)


def load_manifest(folder: Path) -> DatasetManifest:
    """Read and check ``folder/manifest.json``; raises DataNodeError saying what is wrong."""
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
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _bad(folder, f"format is not {FORMAT!r}")
    dataset_id = raw.get("dataset_id")
    if not isinstance(dataset_id, str) or not is_valid_name(dataset_id):
        raise _bad(folder, f"dataset_id {dataset_id!r} is not a plain name")
    ints = {k: raw.get(k) for k in ("vocab_size", "eot_id", "seq_len")}
    for key, value in ints.items():
        if not isinstance(value, int) or value < 0 or (key != "eot_id" and value == 0):
            raise _bad(folder, f"{key} must be a positive integer")
    slices_raw = raw.get("slices")
    if not isinstance(slices_raw, list) or not slices_raw:
        raise _bad(folder, "slices must be a non-empty list")
    slices = tuple(_parse_slice(folder, i, s) for i, s in enumerate(slices_raw))
    if len({s.name for s in slices}) != len(slices):
        raise _bad(folder, "slice names repeat")
    return DatasetManifest(
        dataset_id=dataset_id,
        tokenizer=str(raw.get("tokenizer", "")),
        tokenizer_sha256=str(raw.get("tokenizer_sha256", "")),
        vocab_size=int(ints["vocab_size"]),  # type: ignore[arg-type]
        eot_id=int(ints["eot_id"]),  # type: ignore[arg-type]
        seq_len=int(ints["seq_len"]),  # type: ignore[arg-type]
        slices=slices,
        dtype=str(raw.get("dtype", DTYPE)),
        tensor=str(raw.get("tensor", TENSOR_NAME)),
        documents=int(raw.get("documents", 0)),
        source_bytes=int(raw.get("source_bytes", 0)),
    )
