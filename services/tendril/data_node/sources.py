"""What `tendril data prepare` reads: the records of a source, whatever its format.

A source is a folder or a file:

* a folder saved with ``datasets``' ``save_to_disk`` (it holds ``dataset_info.json`` /
  ``state.json``, or ``dataset_dict.json`` for several splits: ``--split`` picks one);
* ``.jsonl`` / ``.ndjson`` / ``.json`` files: one JSON object per line;
* ``.csv`` and ``.parquet`` files, read with pyarrow in batches;
* any other file: a text file, one record ``{"text": <its bytes>}``;
* a folder of such files (sorted by relative path, hidden entries skipped; ``--suffix`` filters).

Records are plain dicts; a string image path in a record is resolved against the folder of the
file that holds it (``Record.base``). The readers of pyarrow and datasets are imported only
when a source needs them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tendril.core.errors import ErrorKind
from tendril.data_node.corpus import collect_files
from tendril.data_node.errors import DataNodeError, DatasetReason

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_KEY = "text"  # the field a text file's record holds its bytes in
_BATCH_ROWS = 1024


@dataclasses.dataclass(frozen=True)
class Record:
    """One example of the source."""

    fields: dict[str, Any]
    base: Path | None = None  # folder that relative paths in the record are relative to
    raw_text: bool = False  # a whole text file: fields["text"] is bytes, whatever --text-field says


def _bad(message: str) -> DataNodeError:
    return DataNodeError(ErrorKind.INVALID_ARGUMENT, message, reason=DatasetReason.BAD_SOURCE)


def _unreadable(path: Path, exc: Exception) -> DataNodeError:
    return DataNodeError(
        ErrorKind.FAILED_PRECONDITION,
        f"cannot read source file {path}: {exc}",
        reason=DatasetReason.SOURCE_UNREADABLE,
    )


def _need(module: str, what: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise DataNodeError(
            ErrorKind.FAILED_PRECONDITION,
            f"{what} needs the `{module.split('.')[0]}` package: pip install 'tendril[train]'",
            reason=DatasetReason.TOKENIZERS_MISSING,
        ) from exc


def is_datasets_folder(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def kind_of(path: Path) -> str:
    """ "jsonl", "csv", "parquet" or "text", from the file name."""
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "text"


class Source:
    """The records of a folder of files, one file, or a ``datasets`` folder, in a fixed order."""

    def __init__(self, files: Sequence[Path] = (), *, dataset_dir: Path | None = None, split: str = "train") -> None:
        self.files = list(files)
        self.dataset_dir = dataset_dir
        self.split = split
        self._dataset: Any = None

    @classmethod
    def open(cls, src: Path, suffixes: Sequence[str] = (), *, split: str = "train") -> Source:
        if is_datasets_folder(src):
            return cls(dataset_dir=src, split=split)
        return cls(collect_files(src, suffixes))

    @property
    def kinds(self) -> set[str]:
        return {"datasets"} if self.dataset_dir is not None else {kind_of(p) for p in self.files}

    @property
    def text_only(self) -> bool:
        """Plain text files only (their bytes are the documents)."""
        return self.kinds == {"text"}

    def __bool__(self) -> bool:
        return self.dataset_dir is not None or bool(self.files)

    # -- progress -------------------------------------------------------------------------

    def progress(self, *, enabled: bool, max_bytes: int | None) -> tqdm:
        """A bar over the source: examples of a datasets folder, else file bytes."""
        disable = None if enabled else True
        if self.dataset_dir is not None:
            return tqdm(total=len(self.dataset()), unit="ex", desc="prepare", disable=disable)
        total = sum(p.stat().st_size for p in self.files)
        if max_bytes is not None:
            total = min(total, max_bytes)
        return tqdm(total=total, unit="B", unit_scale=True, desc="prepare", disable=disable)

    # -- records --------------------------------------------------------------------------

    def records(self, *, max_bytes: int | None = None, bar: tqdm | None = None) -> Iterator[Record]:
        """Every record; ``max_bytes`` stops text files mid-file and JSONL files at a whole line."""
        if self.dataset_dir is not None:
            if max_bytes is not None:
                raise DataNodeError(
                    ErrorKind.INVALID_ARGUMENT,
                    "--max-bytes applies to text, JSONL, CSV and Parquet files, not to a datasets folder",
                    reason=DatasetReason.BAD_MAX_BYTES,
                )
            yield from self._dataset_records(bar)
            return
        left = max_bytes
        for path in self.files:
            if left is not None and left <= 0:
                return
            kind = kind_of(path)
            if kind == "text":
                data = self._read_text(path, left)
                if left is not None:
                    left -= len(data)
                if bar is not None:
                    bar.update(len(data))
                yield Record({TEXT_KEY: data}, path.parent, raw_text=True)
            elif kind == "jsonl":
                for record, size in self._jsonl(path, left):
                    if left is not None:
                        left -= size
                    if bar is not None:
                        bar.update(size)
                    yield record
            else:
                size = path.stat().st_size
                if left is not None and size > left:
                    return  # NOTE: a CSV/Parquet file is read whole or not at all
                if left is not None:
                    left -= size
                yield from self._table(path, kind, bar, size)

    @staticmethod
    def _read_text(path: Path, left: int | None) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read() if left is None else f.read(left)
        except OSError as exc:
            raise _unreadable(path, exc) from exc

    @staticmethod
    def _jsonl(path: Path, left: int | None) -> Iterator[tuple[Record, int]]:
        try:
            with open(path, "rb") as f:
                for number, line in enumerate(f, 1):
                    if left is not None and len(line) > left:
                        return
                    if left is not None:
                        left -= len(line)
                    if not line.strip():
                        continue  # blank lines (a trailing newline, say) hold no record
                    try:
                        value = json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        raise _bad(f"{path}:{number}: not a JSON object ({exc}); write one object per line") from exc
                    if not isinstance(value, dict):
                        raise _bad(f"{path}:{number}: a JSON {type(value).__name__}, not an object")
                    yield Record(value, path.parent), len(line)
        except OSError as exc:
            raise _unreadable(path, exc) from exc

    @staticmethod
    def _table(path: Path, kind: str, bar: tqdm | None, size: int) -> Iterator[Record]:
        try:
            if kind == "csv":
                csv = _need("pyarrow.csv", "reading CSV")
                batches = csv.read_csv(str(path)).to_batches(max_chunksize=_BATCH_ROWS)
                rows = sum(b.num_rows for b in batches)
            else:
                pq = _need("pyarrow.parquet", "reading Parquet")
                parquet = pq.ParquetFile(str(path))
                rows = parquet.metadata.num_rows
                batches = parquet.iter_batches(batch_size=_BATCH_ROWS)
            done = 0
            for batch in batches:
                for row in batch.to_pylist():
                    yield Record(row, path.parent)
                if bar is not None and rows:
                    step = size * (done + batch.num_rows) // rows - size * done // rows
                    bar.update(step)
                done += batch.num_rows
        except DataNodeError:
            raise
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        except Exception as exc:  # pyarrow's ArrowInvalid and friends
            raise _bad(f"cannot read {path} as {kind.upper()}: {exc}") from exc

    def dataset(self) -> Any:
        """The ``datasets.Dataset`` of a datasets folder (its split), loaded once."""
        if self._dataset is None:
            datasets = _need("datasets", "reading a datasets folder")
            try:
                loaded = datasets.load_from_disk(str(self.dataset_dir))
            except Exception as exc:  # datasets raises FileNotFoundError/ValueError/... for bad folders
                raise _bad(f"cannot load {self.dataset_dir} with datasets.load_from_disk: {exc}") from exc
            if isinstance(loaded, datasets.DatasetDict):
                if self.split not in loaded:
                    raise _bad(
                        f"{self.dataset_dir} has the splits {', '.join(sorted(loaded))}, not {self.split!r}; "
                        "pick one with --split"
                    )
                loaded = loaded[self.split]
            self._dataset = loaded
        return self._dataset

    def _dataset_records(self, bar: tqdm | None) -> Iterator[Record]:
        dataset = self.dataset()
        for row in dataset:
            if bar is not None:
                bar.update(1)
            yield Record(dict(row), self.dataset_dir)
