"""``TENDRIL_TRACE_FILE``: finished spans appended to a file as JSON lines (a debugging aid).

Loaded by :mod:`tendril.core.tracing` only when that variable is set. The exporter is the
SDK's (:mod:`tendril_sdk.tracefile`): executors write the same file with it, and one
definition keeps every process's lines in one format. Several processes (a whole worker,
its executors, a test) may append to the same file; :func:`read_spans` is what the tests use.
"""

from __future__ import annotations

from tendril_sdk.tracefile import JsonLinesSpanExporter, read_spans, span_record

__all__ = ["JsonLinesSpanExporter", "read_spans", "span_record"]
