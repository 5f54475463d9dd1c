"""The job's results under ``results/`` in its work dir, written so that nothing half-done looks complete.

Lines go to a hidden temporary file as batches finish; a job that completes renames it to
``generations.jsonl`` (after an fsync) and then writes ``summary.json`` the same way (temporary
file, rename): ``summary.json`` is there only when ``generations.jsonl`` is whole. A job that
stops early (SIGTERM, a failure) keeps the lines it finished as ``generations.partial.jsonl``
and writes no summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["GENERATIONS", "PARTIAL", "RESULTS_DIR", "SUMMARY", "ResultWriter", "write_json_atomically"]

RESULTS_DIR = "results"
GENERATIONS = "generations.jsonl"
PARTIAL = "generations.partial.jsonl"
SUMMARY = "summary.json"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomically(path: Path, value: Any) -> None:
    """``path`` holds ``value`` as JSON whole or not at all (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


class ResultWriter:
    """``results/generations.jsonl`` line by line, made visible by :meth:`commit` only."""

    def __init__(self, work_dir: Path) -> None:
        self.folder = Path(work_dir) / RESULTS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        # NOTE: results of an earlier try in the same work dir must not pass for this one's.
        for stale in (GENERATIONS, PARTIAL, SUMMARY):
            (self.folder / stale).unlink(missing_ok=True)
        self._tmp = self.folder / f".{GENERATIONS}.tmp-{secrets.token_hex(4)}"
        self._file: IO[str] | None = self._tmp.open("w", encoding="utf-8")
        self.lines = 0

    @property
    def path(self) -> Path:
        return self.folder / GENERATIONS

    def write(self, record: dict[str, Any]) -> None:
        """Append one result line (one JSON object)."""
        assert self._file is not None, "the writer is closed"
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.lines += 1

    def _close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def commit(self, summary: dict[str, Any]) -> Path:
        """Publish every line as generations.jsonl, then ``summary`` as summary.json; the lines' path."""
        self._close()
        os.replace(self._tmp, self.path)
        _fsync_dir(self.folder)
        write_json_atomically(self.folder / SUMMARY, summary)
        return self.path

    def abandon(self) -> Path | None:
        """Keep the lines written so far as generations.partial.jsonl (None when there are none)."""
        with contextlib.suppress(OSError):
            self._close()
        if self.lines == 0 or not self._tmp.exists():
            self._tmp.unlink(missing_ok=True)
            return None
        partial = self.folder / PARTIAL
        os.replace(self._tmp, partial)
        return partial

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._file is not None or self._tmp.exists():
            self.abandon()
