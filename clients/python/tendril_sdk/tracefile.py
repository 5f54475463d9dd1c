"""``TENDRIL_TRACE_FILE``: finished spans appended to a file as JSON lines (a debugging aid).

Needs the ``tracing`` extra (``pip install 'tendril-sdk[tracing]'``); loaded only when that
variable is set. Several processes (a whole worker, its executors, a test) may append to the
same file: each export is one ``write`` on an O_APPEND descriptor, so lines never interleave.
The worker's services write through this same exporter (``tendril.core.tracefile``), so every
line has one format. ``jq`` or a few lines of Python read it; :func:`read_spans` is what the
tests use.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["JsonLinesSpanExporter", "read_spans", "span_record"]

log = logging.getLogger("tendril_sdk.tracing")


def _attribute(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else str(value)


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a flat dict: ids in hex, the service that recorded it, its pid."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "parent_span_id": f"{parent.span_id:016x}" if parent else "",
        "kind": span.kind.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "pid": os.getpid(),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {k: _attribute(v) for k, v in (span.attributes or {}).items()},
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each exported batch of spans to ``path``, one JSON object per line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(span_record(s), separators=(",", ":")) + "\n" for s in spans).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("tracing: cannot append spans to %s: %s", self.path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def read_spans(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every span in a trace file (a line cut off by a crash is skipped)."""
    spans = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            spans.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return spans
