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
Reading these variables and building the tracer provider is ``tendril_sdk.tracing``'s (one
definition for the worker and its executors); this module installs it for a service process
and adds the server side.

Without any of these nothing is installed: no SDK import, no interceptors, no cost.
Otherwise :class:`~tendril.core.server.ServiceServer` and
:func:`~tendril.core.channel.open_channel` add the opentelemetry-instrumentation-grpc
interceptors (:func:`server_interceptors`, :func:`client_interceptors`), which carry the W3C
``traceparent`` in gRPC metadata from process to process.

Executors are separate processes started by JobService, not gRPC calls: JobService puts the
Dispatch span's context into their environment (``TRACEPARENT``/``TRACESTATE``,
:func:`pass_context`) and an executor that calls ``tendril_sdk.tracing.setup`` continues it, so its
bridge calls (and what the bridge calls for them) belong to the dispatch's trace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from tendril.core.logs import get_logger
from tendril_sdk import tracing as sdk_tracing
from tendril_sdk.tracing import TRACEPARENT_ENV, TRACESTATE_ENV

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = get_logger("tendril.tracing")

_lock = threading.Lock()
_provider: TracerProvider | None = None


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
        attributes = {"tendril.worker_id": worker_id} if worker_id else {}
        provider = sdk_tracing.build_provider(f"tendril-{service}", attributes, env)
        if provider is None:
            return False
        from opentelemetry import trace

        trace.set_tracer_provider(provider)
        _provider = provider
    log.info("tracing.enabled", service=service, exporters=sdk_tracing.exporter_names(env))
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


def server_interceptors() -> list[Any]:
    """The OTel aio server interceptor when tracing is on (goes first: its span covers the call)."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider, filter_=sdk_tracing.traced_calls())]


def client_interceptors() -> list[Any]:
    """The OTel aio client interceptors (one per call shape) when tracing is on."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider, filter_=sdk_tracing.traced_calls()))
