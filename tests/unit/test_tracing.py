"""Tracing: which environment turns it on, and trace context through ServiceServer/open_channel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tendril.core import tracing
from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.server import Binding, ServiceServer
from tendril.core.tracefile import read_spans
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_sdk import tracing as sdk_tracing

REGISTRY = "tendril.gateway.v1.RegistryService"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, []),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, []),
        ({"TENDRIL_TRACE_FILE": "/tmp/x.jsonl"}, ["file"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "TENDRIL_TRACE_FILE": "/tmp/x"}, ["otlp", "file"]),
        ({"OTEL_SDK_DISABLED": "true", "TENDRIL_TRACE_FILE": "/tmp/x", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ],
)
def test_the_environment_chooses_the_exporters(env: dict[str, str], expected: list[str]) -> None:
    assert sdk_tracing.exporter_names(env) == expected


def test_without_tracing_nothing_is_added() -> None:
    assert not tracing.active()
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []
    env = {"TRACEPARENT": "00-inherited-from-elsewhere-01", "TRACESTATE": "x=1", "KEEP": "1"}
    tracing.pass_context(env)
    assert env == {"KEEP": "1"}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test only, recording into memory (the process-wide setup stays off)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_provider", provider)
    yield exporter
    provider.shutdown()


class _Registry(gateway_pb2_grpc.RegistryServiceServicer):
    """Answers Get itself, or by calling ``upstream`` (a server calling another, like a bridge)."""

    def __init__(self, upstream: str = "") -> None:
        self.upstream = upstream

    async def Get(self, request: gateway_pb2.GetRequest, context: grpc.aio.ServicerContext) -> gateway_pb2.GetResponse:
        if request.id == "missing":
            raise TendrilError(ErrorKind.NOT_FOUND, "no such record", reason="NOT_FOUND")
        if self.upstream:
            async with open_channel(self.upstream, peer_id="middle") as channel:
                return await gateway_pb2_grpc.RegistryServiceStub(channel).Get(request, timeout=10)
        return gateway_pb2.GetResponse(record=gateway_pb2.Record(kind=request.kind, id=request.id))

    async def Watch(self, request: gateway_pb2.WatchRequest, context: grpc.aio.ServicerContext) -> Any:
        for n in range(3):
            yield gateway_pb2.WatchResponse(record=gateway_pb2.Record(kind=request.kind, id=str(n)))


def _server(upstream: str = "") -> ServiceServer:
    binding = Binding(REGISTRY, gateway_pb2_grpc.add_RegistryServiceServicer_to_server, _Registry(upstream))
    return ServiceServer("127.0.0.1:0", [binding], config_key="test.listen")


def _status_code(span: ReadableSpan) -> int:
    code = (span.attributes or {}).get("rpc.grpc.status_code")
    assert isinstance(code, int), span.attributes
    return code


def _by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


async def test_one_call_through_two_servers_is_one_trace(spans: InMemorySpanExporter) -> None:
    back = _server()
    await back.start()
    front = _server(upstream=back.address)
    await front.start()
    provider = tracing._provider
    assert provider is not None
    try:
        with provider.get_tracer("test").start_as_current_span("scheduler.dispatch") as root:
            async with open_channel(front.address, peer_id="tester") as channel:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                reply = await gateway_pb2_grpc.RegistryServiceStub(channel).Get(
                    gateway_pb2.GetRequest(kind="k", id="x"), timeout=10
                )
                assert reply.record.id == "x"
                with pytest.raises(grpc.aio.AioRpcError):
                    await gateway_pb2_grpc.RegistryServiceStub(channel).Get(
                        gateway_pb2.GetRequest(kind="k", id="missing"), timeout=10
                    )
    finally:
        await front.stop(0)
        await back.stop(0)
    finished = spans.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    method = f"/{REGISTRY}/Get"
    assert {s.name for s in finished} == {"scheduler.dispatch", method}  # health checks are not traced
    assert all(s.context.trace_id == trace_id for s in finished)
    clients, servers = _by_kind(finished, SpanKind.CLIENT), _by_kind(finished, SpanKind.SERVER)
    assert len(clients) == 3 and len(servers) == 3  # test -> front -> back, plus the failing call

    def children(parent: int, among: list[ReadableSpan]) -> list[ReadableSpan]:
        return [s for s in among if s.parent is not None and s.parent.span_id == parent]

    test_calls = children(root.get_span_context().span_id, clients)
    assert len(test_calls) == 2
    front_spans = [s for call in test_calls for s in children(call.context.span_id, servers)]
    assert len(front_spans) == 2
    codes = {s.context.span_id: _status_code(s) for s in front_spans}
    ok_front = next(s for s in front_spans if codes[s.context.span_id] == grpc.StatusCode.OK.value[0])
    # The service's error reaches the span (a server span marks only server faults as ERROR,
    # per the semantic conventions; the caller's span is ERROR).
    assert sorted(codes.values()) == [grpc.StatusCode.OK.value[0], grpc.StatusCode.NOT_FOUND.value[0]]
    assert [c.status.status_code for c in test_calls].count(StatusCode.ERROR) == 1
    (front_call,) = children(ok_front.context.span_id, clients)
    (back_span,) = children(front_call.context.span_id, servers)
    assert back_span.name == method


async def test_streams_are_traced_like_unary_calls(spans: InMemorySpanExporter) -> None:
    server = _server()
    await server.start()
    provider = tracing._provider
    assert provider is not None
    try:
        with provider.get_tracer("test").start_as_current_span("round") as root:
            async with open_channel(server.address, peer_id="tester") as channel:
                call = gateway_pb2_grpc.RegistryServiceStub(channel).Watch(gateway_pb2.WatchRequest(kind="k"))
                assert [r.record.id async for r in call] == ["0", "1", "2"]
    finally:
        await server.stop(0)
    finished = spans.get_finished_spans()
    (client,) = _by_kind(finished, SpanKind.CLIENT)
    (served,) = _by_kind(finished, SpanKind.SERVER)
    assert client.parent is not None and client.parent.span_id == root.get_span_context().span_id
    assert served.parent is not None and served.parent.span_id == client.context.span_id
    assert served.name == f"/{REGISTRY}/Watch" and served.context.trace_id == root.get_span_context().trace_id


def test_pass_context_hands_the_current_span_to_a_child(spans: InMemorySpanExporter) -> None:
    provider = tracing._provider
    assert provider is not None
    env = {"TRACEPARENT": "stale"}
    with provider.get_tracer("test").start_as_current_span("dispatch") as span:
        tracing.pass_context(env)
    ctx = span.get_span_context()
    assert env["TRACEPARENT"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")


_EXECUTOR = textwrap.dedent(
    """
    from opentelemetry import trace
    from tendril_sdk import tracing
    assert tracing.setup("probe")
    with trace.get_tracer("probe").start_as_current_span("executor.work"):
        pass
    """
)


def test_an_executor_continues_the_trace_it_is_given(tmp_path: Path) -> None:
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    trace_file = tmp_path / "spans.jsonl"
    env = {
        **os.environ,
        "TENDRIL_TRACE_FILE": str(trace_file),
        "TRACEPARENT": f"00-{trace_id}-{parent}-01",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.pop("OTEL_TRACES_EXPORTER", None)
    done = subprocess.run([sys.executable, "-c", _EXECUTOR], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (span,) = read_spans(trace_file)
    assert (span["name"], span["trace_id"], span["parent_span_id"]) == ("executor.work", trace_id, parent)
    assert span["service"] == "tendril-executor-probe" and span["pid"] != os.getpid()
    assert json.loads(trace_file.read_text().splitlines()[0]) == span
