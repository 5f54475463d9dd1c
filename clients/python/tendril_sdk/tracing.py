"""Optional OpenTelemetry tracing for an executor's bridge calls.

JobService starts an executor with ``TRACEPARENT`` (and ``TRACESTATE``) set to its Dispatch
span when the worker traces. :func:`setup` continues that trace: afterwards every
:class:`~tendril_sdk.bridge.BridgeClient` adds the OpenTelemetry gRPC client interceptors, so
each bridge call is a CLIENT span under the dispatch (and what the bridge calls for it
follows). It is a no-op unless the environment asks for tracing, the way the worker reads it:

* ``OTEL_TRACES_EXPORTER`` — comma list of ``otlp``, ``console``, ``none``; when unset,
  ``otlp`` is used if ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
  is set (OTLP over gRPC); ``OTEL_SDK_DISABLED=true`` turns it off;
* ``TENDRIL_TRACE_FILE=PATH`` — append finished spans to PATH as JSON lines.

The OpenTelemetry packages are the ``tracing`` extra (``pip install 'tendril-sdk[tracing]'``);
without them :func:`setup` logs a warning and returns False, and nothing else changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TRACEPARENT_ENV",
    "TRACESTATE_ENV",
    "TRACE_FILE_ENV",
    "active",
    "build_provider",
    "client_interceptors",
    "exporter_names",
    "setup",
    "traced_calls",
]

log = logging.getLogger("tendril_sdk.tracing")

TRACE_FILE_ENV = "TENDRIL_TRACE_FILE"
TRACEPARENT_ENV = "TRACEPARENT"
TRACESTATE_ENV = "TRACESTATE"
EXPORTERS = ("otlp", "console", "none")
UNTRACED_SERVICE_PREFIXES = ("grpc.health.", "grpc.reflection.")

_lock = threading.Lock()
_provider: Any = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for (``otlp``/``console``/``file``); [] when off."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return []
    names: list[str] = []
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if chosen:
        for name in (n.strip().lower() for n in chosen.split(",") if n.strip()):
            if name not in EXPORTERS:
                log.warning("tracing: OTEL_TRACES_EXPORTER %r is ignored; it takes %s", name, ", ".join(EXPORTERS))
            elif name != "none" and name not in names:
                names.append(name)
    elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        names.append("otlp")
    if env.get(TRACE_FILE_ENV):
        names.append("file")
    return names


def active() -> bool:
    """Whether :func:`setup` turned tracing on in this process."""
    return _provider is not None


def build_provider(service: str, attributes: Mapping[str, str], env: Mapping[str, str]) -> Any:
    """A TracerProvider for ``service`` with the exporters ``env`` asks for; None when tracing is off
    (or OpenTelemetry is not installed). The one builder: executors (:func:`setup`) and the
    worker's own processes (``tendril.core.tracing``) both use it."""
    names = exporter_names(env)
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        log.warning(
            "tracing: the environment asks for %s but OpenTelemetry is not installed; "
            "pip install 'tendril-sdk[tracing]'",
            ", ".join(names),
        )
        return None
    resource = Resource.create({SERVICE_NAME: service, "service.namespace": "tendril", **attributes})
    provider = TracerProvider(resource=resource)
    for exporter_name in names:
        exporter = _exporter(exporter_name, env)
        # NOTE: the file exporter writes each span as it ends (nothing is lost when a process
        # is killed); network exporters batch.
        processor = SimpleSpanProcessor(exporter) if exporter_name == "file" else BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
    log.info("tracing: %s exports spans to %s", service, ", ".join(names))
    return provider


def setup(name: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Trace this executor as service ``tendril-executor-<name>`` when the environment asks for
    it, continuing ``TRACEPARENT``; once per process. True when tracing is on."""
    global _provider
    env = os.environ if env is None else env
    with _lock:
        if _provider is not None:
            return True
        provider = build_provider(f"tendril-executor-{name}", {}, env)
        if provider is None:
            return False
        from opentelemetry import context, propagate, trace

        trace.set_tracer_provider(provider)
        parent = env.get(TRACEPARENT_ENV, "")
        if parent:
            carrier = {"traceparent": parent, "tracestate": env.get(TRACESTATE_ENV, "")}
            # NOTE: attached for the rest of the process: every span it starts (asyncio tasks
            # copy this context) is a child of the JobService's Dispatch span.
            context.attach(propagate.extract(carrier))
        _provider = provider
    return True


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "file":
        from tendril_sdk.tracefile import JsonLinesSpanExporter

        return JsonLinesSpanExporter(env[TRACE_FILE_ENV])
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol != "grpc":
        log.warning(
            "tracing: OTLP is exported over gRPC only (collector port 4317); OTEL_EXPORTER_OTLP_PROTOCOL=%s is ignored",
            protocol,
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def traced_calls() -> Any:
    """The instrumentation filter: every gRPC service but health checks and reflection."""
    from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_prefix

    return negate(any_of(*(service_prefix(p) for p in UNTRACED_SERVICE_PREFIXES)))


def client_interceptors() -> list[Any]:
    """The OpenTelemetry aio client interceptors when tracing is on, else []."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider, filter_=traced_calls()))  # type: ignore[no-untyped-call]
