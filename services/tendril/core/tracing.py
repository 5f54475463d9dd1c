"""OpenTelemetry tracing for every gRPC server and client of a process, set up once.

:func:`setup` is called once per process (``service_main``, the standalone CLIs, executors).
It reads the standard ``OTEL_*`` variables:

* ``OTEL_TRACES_EXPORTER`` — comma list of ``otlp``, ``console``, ``none``; when unset, ``otlp``
  is used if ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set.
  OTLP goes over gRPC (the exporter reads its usual ``OTEL_EXPORTER_OTLP_*`` settings).
* ``OTEL_SDK_DISABLED=true`` turns everything off; ``OTEL_TRACES_SAMPLER`` and
  ``OTEL_RESOURCE_ATTRIBUTES`` work as the SDK documents them.

plus ``TENDRIL_TRACE_FILE=PATH`` (a debugging aid): every finished span is appended to PATH
as one JSON line (:mod:`tendril.core.tracefile`); several processes may share one file.

Without any of these nothing is installed: no SDK import, no interceptors, no cost.
Otherwise :class:`~tendril.core.server.ServiceServer` and
:func:`~tendril.core.channel.open_channel` add the opentelemetry-instrumentation-grpc
interceptors (:func:`server_interceptors`, :func:`client_interceptors`), which carry the W3C
``traceparent`` in gRPC metadata from process to process.

Executors are separate processes started by JobService, not gRPC calls: JobService puts the
Dispatch span's context into their environment (``TRACEPARENT``/``TRACESTATE``,
:func:`pass_context`) and an executor that calls :func:`setup_executor` continues it, so its
bridge calls (and what the bridge calls for them) belong to the dispatch's trace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from tendril.core.logs import get_logger

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = get_logger("tendril.tracing")

TRACE_FILE_ENV = "TENDRIL_TRACE_FILE"
TRACEPARENT_ENV = "TRACEPARENT"
TRACESTATE_ENV = "TRACESTATE"
EXPORTERS = ("otlp", "console", "none")
# Health checks and reflection are polled all the time and say nothing about the work.
UNTRACED_SERVICE_PREFIXES = ("grpc.health.", "grpc.reflection.")

_lock = threading.Lock()
_provider: TracerProvider | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for (``otlp``/``console``/``file``), none when off."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return []
    names: list[str] = []
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if chosen:
        for name in (n.strip().lower() for n in chosen.split(",") if n.strip()):
            if name not in EXPORTERS:
                log.warning(
                    "tracing.unknown_exporter",
                    exporter=name,
                    hint=f"OTEL_TRACES_EXPORTER takes {', '.join(EXPORTERS)}; this one is ignored",
                )
            elif name != "none" and name not in names:
                names.append(name)
    elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        names.append("otlp")
    if env.get(TRACE_FILE_ENV):
        names.append("file")
    return names


def active() -> bool:
    """Whether this process records spans (and its servers and channels carry trace context)."""
    return _provider is not None


def setup(service: str, *, worker_id: str = "", env: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider the environment asks for; once per process. True when tracing."""
    global _provider
    env = os.environ if env is None else env
    with _lock:
        if _provider is not None:
            return True
        names = exporter_names(env)
        if not names:
            return False
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        attributes: dict[str, str] = {SERVICE_NAME: f"tendril-{service}", "service.namespace": "tendril"}
        if worker_id:
            attributes["tendril.worker_id"] = worker_id
        provider = TracerProvider(resource=Resource.create(attributes))
        for name in names:
            exporter = _exporter(name, env)
            # NOTE: the file exporter writes each span as it ends (no batch thread, nothing lost
            # when a process is killed); network exporters batch.
            processor = SimpleSpanProcessor(exporter) if name == "file" else BatchSpanProcessor(exporter)
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _provider = provider
    log.info("tracing.enabled", service=service, exporters=names)
    return True


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "file":
        from tendril.core.tracefile import JsonLinesSpanExporter

        return JsonLinesSpanExporter(env[TRACE_FILE_ENV])
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol != "grpc":
        log.warning(
            "tracing.otlp_protocol",
            protocol=protocol,
            hint="Tendril exports OTLP over gRPC only (collector port 4317); set OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def setup_executor(name: str, *, env: Mapping[str, str] | None = None) -> bool:
    """:func:`setup` for an executor, continuing the dispatch's trace from ``TRACEPARENT``."""
    env = os.environ if env is None else env
    if not setup(f"executor-{name}", env=env):
        return False
    parent = env.get(TRACEPARENT_ENV, "")
    if parent:
        from opentelemetry import context, propagate

        carrier = {"traceparent": parent, "tracestate": env.get(TRACESTATE_ENV, "")}
        # NOTE: attached for the rest of the process: every span it starts (asyncio tasks copy
        # this context) is a child of the JobService's Dispatch span.
        context.attach(propagate.extract(carrier))
    return True


def pass_context(env: MutableMapping[str, str]) -> None:
    """Set a child process's TRACEPARENT/TRACESTATE to the current span (drop inherited ones)."""
    env.pop(TRACEPARENT_ENV, None)
    env.pop(TRACESTATE_ENV, None)
    if _provider is None:
        return
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if carrier.get("traceparent"):
        env[TRACEPARENT_ENV] = carrier["traceparent"]
    if carrier.get("tracestate"):
        env[TRACESTATE_ENV] = carrier["tracestate"]


def _traced() -> Any:
    from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_prefix

    return negate(any_of(*(service_prefix(p) for p in UNTRACED_SERVICE_PREFIXES)))


def server_interceptors() -> list[Any]:
    """The OTel aio server interceptor when tracing is on (goes first: its span covers the call)."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider, filter_=_traced())]


def client_interceptors() -> list[Any]:
    """The OTel aio client interceptors (one per call shape) when tracing is on."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider, filter_=_traced()))
