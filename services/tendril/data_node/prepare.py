"""``tendril data prepare``: a source (text, JSONL, CSV, Parquet, a datasets folder) -> SafeTensors
slices of named tensors + manifest.json (format ``tendril-dataset/2``).

What each task writes, per example (``N`` = ``--seq-len``):

* ``causal-lm``: documents are tokenized, each followed by the end-of-text id, concatenated
  into one stream and cut into ``input_ids [N]`` int32 sequences (a last partial sequence is
  dropped). No padding, so no attention mask.
* ``causal-lm`` with ``chat`` (``--chat``, supervised fine-tuning): one conversation per
  example, rendered with the tokenizer's chat template: ``input_ids [N]`` int32 (padded),
  ``attention_mask [N]`` int8 and ``labels [N]`` int32, -100 except on the assistant's tokens
  (see :mod:`tendril.data_node.chat`).
* ``masked-lm``: each document is cut into pieces of ``N`` tokens; ``input_ids [N]`` int32
  (padded with the pad id) and ``attention_mask [N]`` int8.
* ``seq2seq-lm``: ``input_ids``/``attention_mask`` from the text field (truncated to ``N``),
  ``labels [--target-len]`` int32 from the target field, padded with -100.
* ``sequence-classification``: ``input_ids``/``attention_mask`` (truncated to ``N``) and
  ``labels []`` int32 from the label field.
* ``image-classification``: ``pixel_values [3, H, W]`` float32 (an image processor folder,
  or plain resizing to ``--image-size`` scaled to [-1, 1]) and ``labels []`` int32.

Labels that are strings become ids in sorted order (``label_names``); integer labels are
kept (``num_labels`` = the largest + 1; a datasets ClassLabel gives the names).

The held-out split: with ``--eval-fraction f > 0``, example 0 and then every ``1/f``-th
example (for causal-lm a sequence of the stream) go to ``eval-NNNNN.safetensors`` instead of
the training slices; the scheduler never assigns those to a training job.

Every ``sequences_per_slice`` examples become one slice file (the last may hold fewer); by
default as many as make about 1 MiB. The output is deterministic: the same source and options
give byte-identical files. The data set appears atomically: everything is written into a
hidden temporary folder beside OUT that is renamed to OUT at the end; a failure or Ctrl-C
leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import math
import os
import re
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as safetensors_bytes

from tendril.core.errors import ErrorKind
from tendril.data_node.chat import ChatFields, ChatFormatter, conversation
from tendril.data_node.errors import DataNodeError, DatasetReason
from tendril.data_node.manifest import (
    PROCESSOR_ASSET,
    TASKS,
    TOKENIZER_ASSET,
    AssetEntry,
    DatasetManifest,
    SliceEntry,
    TensorSpec,
    eval_slice_name,
    is_valid_name,
    slice_name,
)
from tendril.data_node.sources import TEXT_KEY, Record, Source
from tendril.data_node.tokenizer import Text, Tokenizer, train_bpe

TARGET_SLICE_BYTES = 1 << 20
_BATCH = 256  # records tokenized (or images processed) at once
Block = dict[str, np.ndarray]  # named tensors, first dimension = examples


@dataclasses.dataclass
class PrepareOptions:
    """Knobs of ``tendril data prepare``."""

    seq_len: int = 128
    # NOTE: None = as many examples as make about 1 MiB (2048 × 128 int32 tokens for causal-lm):
    # a few 1 MiB chunks per fetch, small enough that a prefetch of 2 slices is cheap.
    sequences_per_slice: int | None = None
    dataset_id: str | None = None  # None: derived from OUT's folder name
    max_bytes: int | None = None  # read at most this many source bytes (a quick subset)
    force: bool = False  # replace a non-empty OUT
    progress: bool = True  # tqdm bar on stderr (tqdm hides it when stderr is not a terminal)
    task: str = "causal-lm"
    eval_fraction: float = 0.02  # share of examples held out (eval-NNNNN slices)
    text_field: str = "text"
    label_field: str = "label"
    target_field: str = "target"
    target_len: int | None = None  # seq2seq labels length (default seq_len)
    image_field: str = "image"
    image_size: int = 224  # plain resizing (no processor)
    processor: Path | None = None  # an image processor folder (AutoImageProcessor)
    train_bpe_vocab: int | None = None  # train a byte-level BPE with this vocabulary on the source
    chat: bool = False  # records are conversations (causal-lm only): labels on the assistant's tokens
    chat_template: str | None = None  # a Jinja chat template replacing the tokenizer's (None: the tokenizer's)
    chat_fields: ChatFields = dataclasses.field(default_factory=ChatFields)


def _invalid(message: str, reason: DatasetReason) -> DataNodeError:
    return DataNodeError(ErrorKind.INVALID_ARGUMENT, message, reason=reason)


def default_dataset_id(out: Path) -> str:
    """OUT's folder name made into a plain id (``my data`` -> ``my-data``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", out.resolve().name).lstrip(".-") or "dataset"
    return name[:128]


def check_options(options: PrepareOptions, out: Path) -> str:
    """Validate the options; returns the data set id to use."""
    if options.task not in TASKS:
        raise _invalid(f"--task {options.task!r} is not one of {', '.join(TASKS)}", DatasetReason.BAD_TASK)
    if options.seq_len < 2:
        raise _invalid(
            f"--seq-len must be at least 2 (inputs + shifted targets), got {options.seq_len}", DatasetReason.BAD_SEQ_LEN
        )
    if options.target_len is not None and options.target_len < 1:
        raise _invalid(f"--target-len must be at least 1, got {options.target_len}", DatasetReason.BAD_SEQ_LEN)
    if options.sequences_per_slice is not None and options.sequences_per_slice < 1:
        raise _invalid(
            f"--sequences-per-slice must be at least 1, got {options.sequences_per_slice}", DatasetReason.BAD_SLICE_SIZE
        )
    if options.max_bytes is not None and options.max_bytes <= 0:
        raise _invalid(f"--max-bytes must be positive, got {options.max_bytes}", DatasetReason.BAD_MAX_BYTES)
    if not 0 <= options.eval_fraction < 1 or math.isnan(options.eval_fraction):
        raise _invalid(
            f"--eval-fraction must be at least 0 and below 1, got {options.eval_fraction}",
            DatasetReason.BAD_EVAL_FRACTION,
        )
    if options.chat and options.task != "causal-lm":
        raise _invalid(
            f"--chat prepares conversations for a causal LM; it does not go with --task {options.task}",
            DatasetReason.BAD_TASK,
        )
    if options.image_size < 1:
        raise _invalid(f"--image-size must be positive, got {options.image_size}", DatasetReason.BAD_TASK)
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


# -- writing ------------------------------------------------------------------------------


class _SplitWriter:
    """Collects examples of one split and writes a slice file each time enough are there."""

    def __init__(self, folder: Path, name: Callable[[int], str], per_slice: int) -> None:
        self.folder = folder
        self.name = name
        self.per_slice = per_slice
        self.pending: list[Block] = []
        self.pending_rows = 0
        self.slices: list[SliceEntry] = []

    def add(self, block: Block) -> None:
        rows = len(next(iter(block.values())))
        if rows == 0:
            return
        self.pending.append(block)
        self.pending_rows += rows
        if self.pending_rows >= self.per_slice:
            joined = _concat(self.pending)
            full = (self.pending_rows // self.per_slice) * self.per_slice
            for start in range(0, full, self.per_slice):
                self._write({k: v[start : start + self.per_slice] for k, v in joined.items()})
            rest = {k: v[full:] for k, v in joined.items()}
            self.pending, self.pending_rows = [rest], self.pending_rows - full

    def finish(self) -> None:
        """Write the last, shorter slice."""
        if self.pending_rows:
            self._write(_concat(self.pending))
        self.pending, self.pending_rows = [], 0

    def _write(self, block: Block) -> None:
        tensors = {k: np.ascontiguousarray(v) for k, v in block.items()}
        # NOTE: no __metadata__, so the file bytes depend only on the tensors (deterministic).
        data = safetensors_bytes(tensors)
        name = self.name(len(self.slices))
        (self.folder / name).write_bytes(data)
        rows = len(next(iter(tensors.values())))
        self.slices.append(SliceEntry(name, len(data), hashlib.sha256(data).hexdigest(), rows))


def _concat(blocks: Sequence[Block]) -> Block:
    if len(blocks) == 1:
        return blocks[0]
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


class _Splitter:
    """Routes examples to the held-out split (example 0, then every 1/f-th) or to training."""

    def __init__(self, train: _SplitWriter, held_out: _SplitWriter, fraction: float) -> None:
        self.train = train
        self.held_out = held_out
        self.fraction = fraction
        self.seen = 0

    def add(self, block: Block) -> None:
        rows = len(next(iter(block.values())))
        if rows == 0:
            return
        if self.fraction <= 0:
            self.train.add(block)
        else:
            index = np.arange(self.seen, self.seen + rows, dtype=np.float64)
            held = (index == 0) | (np.floor(index * self.fraction) > np.floor((index - 1) * self.fraction))
            self.held_out.add({k: v[held] for k, v in block.items()})
            self.train.add({k: v[~held] for k, v in block.items()})
        self.seen += rows

    def finish(self) -> None:
        self.train.finish()
        self.held_out.finish()


def _tar_folder(folder: Path, target: Path) -> None:
    """``folder``'s files as a tar with fixed metadata (same files, same bytes)."""
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def _asset(folder: Path, name: str, kind: str, save: Callable[[Path], None]) -> AssetEntry:
    with tempfile.TemporaryDirectory(dir=folder, prefix=".asset-") as tmp:
        save(Path(tmp))
        _tar_folder(Path(tmp), folder / name)
    data = (folder / name).read_bytes()
    return AssetEntry(name, len(data), hashlib.sha256(data).hexdigest(), kind)


# -- reading records ------------------------------------------------------------------------


def _field(record: Record, field: str, position: int, flag: str) -> Any:
    if field in record.fields and record.fields[field] is not None:
        return record.fields[field]
    if record.raw_text:
        where = "a text file has only its text"
    else:
        where = f"its fields are {', '.join(sorted(record.fields)) or '(none)'}"
    raise _invalid(
        f"record {position} of the source has no field {field!r} ({where}); name the field with {flag}",
        DatasetReason.FIELD_MISSING,
    )


def _text(record: Record, field: str, position: int, flag: str = "--text-field") -> Text:
    if record.raw_text:
        return record.fields[TEXT_KEY]  # type: ignore[no-any-return]
    value = _field(record, field, position, flag)
    if not isinstance(value, str | bytes):
        raise _invalid(
            f"record {position}: field {field!r} holds a {type(value).__name__}, not text; "
            f"name a text field with {flag}",
            DatasetReason.FIELD_MISSING,
        )
    return value


class _Labels:
    """Label values -> ids: sorted names for strings, the integers themselves otherwise."""

    def __init__(self, values: Iterable[Any], names: Sequence[str] = ()) -> None:
        seen = set()
        for position, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, str | int) or (isinstance(value, int) and value < 0):
                raise _invalid(
                    f"record {position}: label {value!r} is neither a string nor a non-negative integer",
                    DatasetReason.BAD_LABEL,
                )
            seen.add(value)
        kinds = {type(v) for v in seen}
        if len(kinds) > 1:
            raise _invalid("labels mix strings and integers; use one kind", DatasetReason.BAD_LABEL)
        if not seen:
            raise _invalid("the source holds no labelled record", DatasetReason.SOURCE_TOO_SMALL)
        if kinds == {str}:
            self.names = tuple(sorted(seen))
            self._ids = {name: i for i, name in enumerate(self.names)}
            self.num_labels = len(self.names)
        else:
            self.num_labels = max(seen) + 1
            given = len(names) == self.num_labels
            self.names = tuple(names) if given else tuple(str(i) for i in range(self.num_labels))
            self._ids = {}

    def id(self, value: Any) -> int:
        return self._ids[value] if isinstance(value, str) else int(value)


def _pad(ids: np.ndarray, length: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    ids = ids[:length]
    out = np.full(length, pad, dtype=np.int32)
    out[: len(ids)] = ids
    mask = np.zeros(length, dtype=np.int8)
    mask[: len(ids)] = 1
    return out, mask


def _batches(records: Iterator[Record], size: int = _BATCH) -> Iterator[list[tuple[int, Record]]]:
    numbered = enumerate(records)
    while batch := list(itertools.islice(numbered, size)):
        yield batch


# -- the tasks ------------------------------------------------------------------------------


class _Counts:
    def __init__(self) -> None:
        self.documents = 0
        self.source_bytes = 0
        self.tokens = 0

    def text(self, value: Text) -> None:
        self.documents += 1
        self.source_bytes += len(value) if isinstance(value, bytes) else len(value.encode("utf-8"))


def _packed(records: Iterator[Record], tok: Tokenizer, o: PrepareOptions, counts: _Counts) -> Iterator[Block]:
    """causal-lm: one token stream cut into sequences."""
    eot = np.asarray([tok.eot_id], dtype=np.int32)
    pending: list[np.ndarray] = []
    pending_tokens = 0
    block_tokens = o.seq_len * _BATCH
    for batch in _batches(records):
        texts = [_text(r, o.text_field, i) for i, r in batch]
        for text, ids in zip(texts, tok.encode_batch(texts), strict=True):
            counts.text(text)
            pending += [ids, eot]
            pending_tokens += len(ids) + 1
            counts.tokens += len(ids) + 1
        if pending_tokens >= block_tokens:
            stream = np.concatenate(pending)
            full = (len(stream) // o.seq_len) * o.seq_len
            yield {"input_ids": stream[:full].reshape(-1, o.seq_len)}
            pending, pending_tokens = [stream[full:]], len(stream) - full
    stream = np.concatenate(pending) if pending else np.empty(0, np.int32)
    full = (len(stream) // o.seq_len) * o.seq_len
    yield {"input_ids": stream[:full].reshape(-1, o.seq_len)}


def _chunked(records: Iterator[Record], tok: Tokenizer, o: PrepareOptions, counts: _Counts) -> Iterator[Block]:
    """masked-lm: each document in pieces of seq_len tokens, the last one padded."""
    for batch in _batches(records):
        texts = [_text(r, o.text_field, i) for i, r in batch]
        ids_out, masks = [], []
        for text, ids in zip(texts, tok.encode_batch(texts), strict=True):
            counts.text(text)
            counts.tokens += len(ids)
            for start in range(0, len(ids), o.seq_len):
                ids_row, mask = _pad(ids[start : start + o.seq_len], o.seq_len, tok.pad_id)
                ids_out.append(ids_row)
                masks.append(mask)
        if ids_out:
            yield {"input_ids": np.stack(ids_out), "attention_mask": np.stack(masks)}


def _special(tok: Tokenizer) -> bool:
    # NOTE: a tokenizer directory knows its own template ([CLS] ... [SEP], ... </s>); the byte
    # tokenizer and a trained BPE have none, so their examples end with the end-of-text id.
    return tok.name.startswith("hf")


def _encode_examples(tok: Tokenizer, texts: list[Text], length: int) -> list[np.ndarray]:
    encoded = tok.encode_batch(texts, special=_special(tok))
    if not _special(tok):
        eot = np.asarray([tok.eot_id], dtype=np.int32)
        encoded = [np.concatenate([ids[: length - 1], eot]) for ids in encoded]
    return encoded


def _per_example(
    records: Iterator[Record], tok: Tokenizer, o: PrepareOptions, counts: _Counts, labels: _Labels | None
) -> Iterator[Block]:
    """seq2seq-lm and sequence-classification: one example per record."""
    target_len = o.target_len or o.seq_len
    for batch in _batches(records):
        texts = [_text(r, o.text_field, i) for i, r in batch]
        for text in texts:
            counts.text(text)
        pairs = [_pad(ids, o.seq_len, tok.pad_id) for ids in _encode_examples(tok, texts, o.seq_len)]
        block: Block = {
            "input_ids": np.stack([p[0] for p in pairs]),
            "attention_mask": np.stack([p[1] for p in pairs]),
        }
        if labels is not None:
            values = [_field(r, o.label_field, i, "--label-field") for i, r in batch]
            block["labels"] = np.asarray([labels.id(v) for v in values], dtype=np.int32)
        else:
            targets = [_text(r, o.target_field, i, "--target-field") for i, r in batch]
            rows = []
            for ids in _encode_examples(tok, targets, target_len):
                row = np.full(target_len, -100, dtype=np.int32)  # -100: ignored by the loss
                row[: min(len(ids), target_len)] = ids[:target_len]
                rows.append(row)
            block["labels"] = np.stack(rows)
        counts.tokens += int(block["attention_mask"].sum())
        yield block


def _chat(records: Iterator[Record], chat: ChatFormatter, o: PrepareOptions, counts: _Counts) -> Iterator[Block]:
    """causal-lm --chat: one conversation per example, labels on the assistant's tokens only."""
    for batch in _batches(records):
        rows = []
        for position, record in batch:
            messages = conversation(record, position, o.chat_fields)
            counts.documents += 1
            counts.source_bytes += sum(len(m["content"].encode("utf-8")) for m in messages)
            example = chat.example(messages, position, o.seq_len)
            if example is not None:
                rows.append(example)
                counts.tokens += int(example[1].sum())
        if rows:
            yield {
                "input_ids": np.stack([r[0] for r in rows]),
                "attention_mask": np.stack([r[1] for r in rows]),
                "labels": np.stack([r[2] for r in rows]),
            }


class _Images:
    """Images -> pixel_values: an image processor folder, or plain resizing."""

    def __init__(self, o: PrepareOptions) -> None:
        try:
            import PIL.Image
        except ImportError as exc:
            raise DataNodeError(
                ErrorKind.FAILED_PRECONDITION,
                "image data sets need the `pillow` package: pip install 'tendril[train]'",
                reason=DatasetReason.TOKENIZERS_MISSING,
            ) from exc
        self._pil = PIL.Image
        self.size = o.image_size
        self.processor: Any = None
        if o.processor is not None:
            if not o.processor.is_dir():
                raise DataNodeError(
                    ErrorKind.NOT_FOUND,
                    f"--processor {o.processor} is not a folder; pass a folder written by an image "
                    "processor's save_pretrained",
                    reason=DatasetReason.PROCESSOR_NOT_FOUND,
                )
            try:
                from transformers import AutoImageProcessor

                self.processor = AutoImageProcessor.from_pretrained(
                    str(o.processor), local_files_only=True, trust_remote_code=False
                )
            except Exception as exc:  # ImportError, OSError, ValueError: all mean "cannot use it"
                raise DataNodeError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"cannot load the image processor in {o.processor}: {exc}",
                    reason=DatasetReason.BAD_PROCESSOR,
                ) from exc

    def image(self, value: Any, record: Record, position: int) -> Any:
        pil = self._pil
        try:
            if isinstance(value, pil.Image):
                image = value
            elif isinstance(value, dict) and (value.get("bytes") or value.get("path")):
                image = self.image(value.get("bytes") or value["path"], record, position)
            elif isinstance(value, bytes):
                image = pil.open(io.BytesIO(value))
            elif isinstance(value, str):
                path = Path(value)
                if not path.is_absolute() and record.base is not None:
                    path = record.base / path
                image = pil.open(path)
            else:
                raise ValueError(f"a {type(value).__name__} is not an image, image bytes or a path")
            return image.convert("RGB")
        except DataNodeError:
            raise
        except Exception as exc:  # PIL raises OSError/UnidentifiedImageError/ValueError
            raise _invalid(f"record {position}: cannot read the image: {exc}", DatasetReason.BAD_IMAGE) from exc

    def pixels(self, images: list[Any]) -> np.ndarray:
        if self.processor is not None:
            out = self.processor(images=images, return_tensors="np")["pixel_values"]
            return np.asarray(out, dtype=np.float32)
        rows = []
        for image in images:
            resized = image.resize((self.size, self.size), self._pil.Resampling.BICUBIC)
            array = np.asarray(resized, dtype=np.float32) / 255.0
            rows.append(((array - 0.5) / 0.5).transpose(2, 0, 1))
        return np.stack(rows)


def _images(
    records: Iterator[Record], images: _Images, o: PrepareOptions, counts: _Counts, labels: _Labels
) -> Iterator[Block]:
    for batch in _batches(records, 64):
        pictures = [images.image(_field(r, o.image_field, i, "--image-field"), r, i) for i, r in batch]
        values = [_field(r, o.label_field, i, "--label-field") for i, r in batch]
        counts.documents += len(batch)
        yield {
            "pixel_values": images.pixels(pictures),
            "labels": np.asarray([labels.id(v) for v in values], dtype=np.int32),
        }


# -- the whole -------------------------------------------------------------------------------


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


def _label_names_of(source: Source, field: str) -> Sequence[str]:
    """A datasets ClassLabel's names, when the source has one."""
    if source.dataset_dir is None:
        return ()
    feature = source.dataset().features.get(field)
    return tuple(getattr(feature, "names", ()) or ())


def _spec(block: Block) -> dict[str, TensorSpec]:
    return {k: TensorSpec(str(v.dtype), tuple(int(d) for d in v.shape[1:])) for k, v in block.items()}


def prepare_dataset(
    source: Sequence[Path] | Source,
    out: Path,
    tokenizer: Tokenizer | None,
    options: PrepareOptions | None = None,
) -> DatasetManifest:
    """Turn ``source`` into a data set at ``out``; returns its manifest.

    ``tokenizer``: the tokenizer of text tasks (None with ``options.train_bpe_vocab``: a BPE
    trained on the source; ignored for images).
    """
    options = options or PrepareOptions()
    dataset_id = check_options(options, out)
    if not isinstance(source, Source):
        source = Source(source)
    if not source:
        raise _invalid("no source files found; check SRC (and --suffix)", DatasetReason.NO_SOURCE_FILES)
    images = options.task == "image-classification"
    if (options.chat or options.task in ("seq2seq-lm", "sequence-classification")) and source.text_only:
        raise _invalid(
            f"{'--chat' if options.chat else '--task ' + options.task} needs records with fields (JSONL, CSV, "
            "Parquet or a datasets folder), not plain text files",
            DatasetReason.BAD_TASK,
        )

    def records() -> Iterator[Record]:
        return source.records(max_bytes=options.max_bytes)

    if not images and options.train_bpe_vocab is not None:
        if options.chat:
            texts: Iterator[Text] = (
                m["content"] for i, r in enumerate(records()) for m in conversation(r, i, options.chat_fields)
            )
        else:
            texts = (_text(r, options.text_field, i) for i, r in enumerate(records()))
        tokenizer = train_bpe(texts, options.train_bpe_vocab, progress=options.progress)
    if not images and tokenizer is None:
        raise _invalid("a text task needs a tokenizer", DatasetReason.BAD_TOKENIZER)
    if options.task == "masked-lm" and tokenizer is not None and tokenizer.mask_id < 0:
        raise _invalid(
            "--task masked-lm needs a tokenizer with a mask token: use --train-tokenizer bpe, or a "
            "--tokenizer folder that has one",
            DatasetReason.BAD_TOKENIZER,
        )
    labels: _Labels | None = None
    if options.task in ("sequence-classification", "image-classification"):
        values = (_field(r, options.label_field, i, "--label-field") for i, r in enumerate(records()))
        labels = _Labels(values, _label_names_of(source, options.label_field))
    picture = _Images(options) if images else None
    chat = ChatFormatter(tokenizer, options.chat_template) if options.chat and tokenizer is not None else None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        counts = _Counts()
        with source.progress(enabled=options.progress, max_bytes=options.max_bytes) as bar:
            stream = source.records(max_bytes=options.max_bytes, bar=bar)
            blocks: Iterator[Block]
            if picture is not None:
                assert labels is not None
                blocks = _images(stream, picture, options, counts, labels)
            else:
                assert tokenizer is not None
                if chat is not None:
                    blocks = _chat(stream, chat, options, counts)
                elif options.task == "causal-lm":
                    blocks = _packed(stream, tokenizer, options, counts)
                elif options.task == "masked-lm":
                    blocks = _chunked(stream, tokenizer, options, counts)
                else:
                    blocks = _per_example(stream, tokenizer, options, counts, labels)
            first = next((b for b in blocks if len(next(iter(b.values())))), None)
            if first is None and chat is not None:
                raise _invalid(
                    f"none of the {counts.documents} conversations has an assistant token within the first "
                    f"--seq-len {options.seq_len} tokens; raise --seq-len",
                    DatasetReason.SOURCE_TOO_SMALL,
                )
            if first is None:
                raise _invalid(
                    f"the source holds {counts.tokens} tokens, fewer than one sequence of --seq-len "
                    f"{options.seq_len}; add text, raise --max-bytes or lower --seq-len",
                    DatasetReason.SOURCE_TOO_SMALL,
                )
            tensors = _spec(first)
            per_slice = options.sequences_per_slice or max(
                1, TARGET_SLICE_BYTES // sum(v[0].nbytes for v in first.values())
            )
            splitter = _Splitter(
                _SplitWriter(tmp, slice_name, per_slice),
                _SplitWriter(tmp, eval_slice_name, per_slice),
                options.eval_fraction,
            )
            for block in itertools.chain([first], blocks):
                splitter.add(block)
            splitter.finish()
        train, held_out = splitter.train.slices, splitter.held_out.slices
        if not train:
            raise _invalid(
                f"all {splitter.seen} examples went to the held-out split; add data or lower --eval-fraction",
                DatasetReason.SOURCE_TOO_SMALL,
            )
        assets: list[AssetEntry] = []
        if chat is not None:
            # NOTE: the tokenizer as used, with its chat template, so the exported model formats prompts alike.
            assets.append(_asset(tmp, TOKENIZER_ASSET, "tokenizer", chat.save))
        elif tokenizer is not None and not images:
            assets.append(_asset(tmp, TOKENIZER_ASSET, "tokenizer", tokenizer.save))
        if picture is not None and picture.processor is not None:
            assets.append(_asset(tmp, PROCESSOR_ASSET, "processor", picture.processor.save_pretrained))
        manifest = DatasetManifest(
            dataset_id=dataset_id,
            tokenizer="" if images or tokenizer is None else tokenizer.name,
            tokenizer_sha256=assets[0].sha256 if assets and not images else "",
            vocab_size=0 if images or tokenizer is None else tokenizer.vocab_size,
            eot_id=-1 if images or tokenizer is None else tokenizer.eot_id,
            seq_len=0 if images else options.seq_len,
            slices=tuple(train),
            documents=counts.documents,
            source_bytes=counts.source_bytes,
            task=options.task,
            tensors=tensors,
            eval_slices=tuple(held_out),
            assets=tuple(assets),
            pad_id=-1
            if images or tokenizer is None or (options.task == "causal-lm" and chat is None)
            else tokenizer.pad_id,
            mask_id=-1 if images or tokenizer is None else tokenizer.mask_id,
            num_labels=labels.num_labels if labels is not None else 0,
            label_names=labels.names if labels is not None else (),
        )
        manifest.write(tmp)
        _swap_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
