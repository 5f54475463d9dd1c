"""``tendril data prepare``: text files -> SafeTensors slices + manifest.json.

Documents (files, in the order given) are tokenized, each followed by the end-of-text id, and
concatenated into one token stream; the stream is cut into ``input_ids [N, seq_len]`` int32
sequences (a last partial sequence is dropped) and every ``sequences_per_slice`` sequences
become one ``slice-NNNNN.safetensors`` (the last slice may hold fewer). The output is
deterministic: the same files and options give byte-identical slices.

The data set appears atomically: everything is written into a hidden temporary folder beside
OUT that is renamed to OUT at the end; a failure or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import save as safetensors_bytes
from tqdm import tqdm

from tendril.core.errors import ErrorKind
from tendril.data_node.errors import DataNodeError, DatasetReason
from tendril.data_node.manifest import TENSOR_NAME, DatasetManifest, SliceEntry, is_valid_name, slice_name
from tendril.data_node.tokenizer import Tokenizer


@dataclasses.dataclass
class PrepareOptions:
    """Knobs of ``tendril data prepare``."""

    seq_len: int = 128
    # NOTE: 2048 × 128 int32 tokens = 1 MiB per slice by default: a few 1 MiB chunks per fetch,
    # small enough that a prefetch of 2 slices is cheap.
    sequences_per_slice: int = 2048
    dataset_id: str | None = None  # None: derived from OUT's folder name
    max_bytes: int | None = None  # read at most this many source bytes (a quick subset)
    force: bool = False  # replace a non-empty OUT
    progress: bool = True  # tqdm bar on stderr (tqdm hides it when stderr is not a terminal)


def _invalid(message: str, reason: DatasetReason) -> DataNodeError:
    return DataNodeError(ErrorKind.INVALID_ARGUMENT, message, reason=reason)


def default_dataset_id(out: Path) -> str:
    """OUT's folder name made into a plain id (``my data`` -> ``my-data``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", out.resolve().name).lstrip(".-") or "dataset"
    return name[:128]


def check_options(options: PrepareOptions, out: Path) -> str:
    """Validate the options; returns the data set id to use."""
    if options.seq_len < 2:
        raise _invalid(
            f"--seq-len must be at least 2 (inputs + shifted targets), got {options.seq_len}", DatasetReason.BAD_SEQ_LEN
        )
    if options.sequences_per_slice < 1:
        raise _invalid(
            f"--sequences-per-slice must be at least 1, got {options.sequences_per_slice}", DatasetReason.BAD_SLICE_SIZE
        )
    if options.max_bytes is not None and options.max_bytes <= 0:
        raise _invalid(f"--max-bytes must be positive, got {options.max_bytes}", DatasetReason.BAD_MAX_BYTES)
    dataset_id = options.dataset_id or default_dataset_id(out)
    if not is_valid_name(dataset_id):
        raise _invalid(
            f"--dataset-id {dataset_id!r} is not a plain name: use 1-128 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'",
            DatasetReason.BAD_DATASET_ID,
        )
    if out.exists() and not out.is_dir():
        raise _invalid(f"OUT {out} exists and is not a folder; choose another OUT", DatasetReason.OUT_NOT_A_FOLDER)
    if out.is_dir() and any(out.iterdir()) and not options.force:
        raise DataNodeError(
            ErrorKind.ALREADY_EXISTS,
            f"OUT {out} is not empty; choose an empty or new folder, or pass --force to replace it",
            reason=DatasetReason.OUT_NOT_EMPTY,
        )
    return dataset_id


def _read_documents(files: Sequence[Path], max_bytes: int | None, bar: tqdm) -> Iterator[bytes]:
    """Each file's bytes, stopping (mid-file) once ``max_bytes`` were read."""
    left = max_bytes
    for path in files:
        if left is not None and left <= 0:
            return
        try:
            with open(path, "rb") as f:
                data = f.read() if left is None else f.read(left)
        except OSError as exc:
            raise DataNodeError(
                ErrorKind.FAILED_PRECONDITION,
                f"cannot read source file {path}: {exc}",
                reason=DatasetReason.SOURCE_UNREADABLE,
            ) from exc
        if left is not None:
            left -= len(data)
        bar.update(len(data))
        yield data


class _SliceWriter:
    """Cuts a token stream into sequences and writes full slices as they fill up."""

    def __init__(self, folder: Path, seq_len: int, sequences_per_slice: int) -> None:
        self.folder = folder
        self.seq_len = seq_len
        self.slice_tokens = seq_len * sequences_per_slice
        self.pending: list[np.ndarray] = []
        self.pending_tokens = 0
        self.slices: list[SliceEntry] = []
        self.tokens_seen = 0

    def add(self, tokens: np.ndarray) -> None:
        self.pending.append(tokens)
        self.pending_tokens += len(tokens)
        self.tokens_seen += len(tokens)
        if self.pending_tokens >= self.slice_tokens:
            stream = np.concatenate(self.pending)
            full = (len(stream) // self.slice_tokens) * self.slice_tokens
            for start in range(0, full, self.slice_tokens):
                self._write(stream[start : start + self.slice_tokens])
            rest = stream[full:]
            self.pending, self.pending_tokens = [rest], len(rest)

    def finish(self) -> None:
        """Write the last, shorter slice from the whole sequences that are left."""
        stream = np.concatenate(self.pending) if self.pending else np.empty(0, np.int32)
        usable = (len(stream) // self.seq_len) * self.seq_len
        if usable:
            self._write(stream[:usable])
        self.pending, self.pending_tokens = [], 0

    def _write(self, tokens: np.ndarray) -> None:
        sequences = np.ascontiguousarray(tokens.reshape(-1, self.seq_len), dtype=np.int32)
        # NOTE: no __metadata__, so the file bytes depend only on the tokens (deterministic).
        data = safetensors_bytes({TENSOR_NAME: sequences})
        name = slice_name(len(self.slices))
        (self.folder / name).write_bytes(data)
        self.slices.append(SliceEntry(name, len(data), hashlib.sha256(data).hexdigest(), int(sequences.shape[0])))


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``; a replaced ``out`` is removed only once that worked."""
    old: Path | None = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
            os.rename(out, old)
        else:
            out.rmdir()
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare_dataset(
    files: Sequence[Path], out: Path, tokenizer: Tokenizer, options: PrepareOptions | None = None
) -> DatasetManifest:
    """Tokenize ``files`` into a data set at ``out``; returns its manifest."""
    options = options or PrepareOptions()
    dataset_id = check_options(options, out)
    if not files:
        raise _invalid("no source files found; check SRC (and --suffix)", DatasetReason.NO_SOURCE_FILES)
    total = sum(p.stat().st_size for p in files)
    if options.max_bytes is not None:
        total = min(total, options.max_bytes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        writer = _SliceWriter(tmp, options.seq_len, options.sequences_per_slice)
        eot = np.asarray([tokenizer.eot_id], dtype=np.int32)
        documents = source_bytes = 0
        disable = None if options.progress else True
        with tqdm(total=total, unit="B", unit_scale=True, desc="prepare", disable=disable) as bar:
            for document in _read_documents(files, options.max_bytes, bar):
                writer.add(tokenizer.encode(document))
                writer.add(eot)
                documents += 1
                source_bytes += len(document)
        writer.finish()
        if not writer.slices:
            raise _invalid(
                f"the source holds {writer.tokens_seen} tokens, fewer than one sequence of --seq-len "
                f"{options.seq_len}; add text, raise --max-bytes or lower --seq-len",
                DatasetReason.SOURCE_TOO_SMALL,
            )
        manifest = DatasetManifest(
            dataset_id=dataset_id,
            tokenizer=tokenizer.name,
            tokenizer_sha256=tokenizer.sha256,
            vocab_size=tokenizer.vocab_size,
            eot_id=tokenizer.eot_id,
            seq_len=options.seq_len,
            slices=tuple(writer.slices),
            documents=documents,
            source_bytes=source_bytes,
        )
        manifest.write(tmp)
        _swap_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
