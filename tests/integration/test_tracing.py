"""One dispatch is one trace across processes: test (scheduler) -> JobService -> LeaseService,
and JobService -> executor process -> its job bridge.

The test records its own spans in memory; the LeaseService and JobService processes (and the
executor JobService starts) write theirs to a JSON-lines file (``TENDRIL_TRACE_FILE``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tendril.core.channel import open_channel
from tendril.core.identity import peer_id_metadata
from tendril.core.tracefile import read_spans
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_sdk.tracing import TRACE_FILE_ENV
from tests.procs import running, spawn, wait_serving, worker_config, write_config_json

pytestmark = pytest.mark.integration

OWNER = "sched-traced"
DISPATCH = "/tendril.job.v1.JobService/Dispatch"
LEASE_GET = "/tendril.lease.v1.LeaseService/Get"
GET_JOB = "/tendril.bridge.v1.JobBridgeService/GetJob"


async def _lease(address: str, worker_id: str) -> str:
    async with open_channel(address, peer_id=worker_id) as channel:
        stub = lease_pb2_grpc.LeaseServiceStub(channel)
        reserved = await stub.Reserve(
            lease_pb2.ReserveRequest(
                owner_id=OWNER, resources=common_pb2.Resources(cpu=1, memory_gib=1), price=100, ttl_seconds=5
            ),
            timeout=10,
        )
        await stub.Confirm(lease_pb2.ConfirmRequest(lease_id=reserved.lease.lease_id), timeout=10)
        return str(reserved.lease.lease_id)


async def _wait_end(address: str, job_id: str) -> job_pb2.Job:
    async with open_channel(address, peer_id=OWNER) as channel:
        async for event in job_pb2_grpc.JobServiceStub(channel).Watch(job_pb2.WatchRequest(job_id=job_id), timeout=60):
            if event.job.state in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED):
                return event.job
    raise AssertionError(f"the watch of {job_id} ended before the job did")


def _find(spans: list[dict[str, Any]], **want: str) -> dict[str, Any]:
    found = [s for s in spans if all(s.get(k) == v for k, v in want.items())]
    assert len(found) == 1, f"{len(found)} spans match {want}: {found}"
    return found[0]


async def test_a_dispatch_is_one_trace_across_processes(tmp_path: Path) -> None:
    config = worker_config(tmp_path, lease__renewable_seconds=120)
    trace_file = tmp_path / "spans.jsonl"
    config_json = write_config_json(config, tmp_path / "config.json")
    env = {TRACE_FILE_ENV: str(trace_file)}
    procs = [
        spawn(
            [sys.executable, "-m", f"tendril.{name}", "--config-json", str(config_json)],
            log=tmp_path / f"{name}.log",
            env=env,
        )
        for name in ("lease", "job")
    ]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with running(*procs):
        await asyncio.gather(wait_serving(config.listen("lease"), "", 60), wait_serving(config.listen("job"), "", 60))
        lease_id = await _lease(config.listen("lease"), config.worker_id)
        # The test plays the scheduler: its own tracer, its own traced channel.
        interceptors = aio_client_interceptors(tracer_provider=provider)
        async with grpc.aio.insecure_channel(config.listen("job"), interceptors=interceptors) as channel:
            with provider.get_tracer("test-scheduler").start_as_current_span("scheduler.dispatch") as root:
                await job_pb2_grpc.JobServiceStub(channel).Dispatch(
                    job_pb2.DispatchRequest(
                        job_id="traced",
                        lease_id=lease_id,
                        executor=common_pb2.ExecutorRef(executor_class="example", name="echo"),
                        config=struct_pb2.Struct(),
                    ),
                    metadata=peer_id_metadata(OWNER),
                    timeout=30,
                )
        job = await _wait_end(config.listen("job"), "traced")
        assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.reason

        trace_id = f"{root.get_span_context().trace_id:032x}"
        (client,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
        deadline = time.monotonic() + 30
        while True:
            spans = [s for s in read_spans(trace_file) if s["trace_id"] == trace_id]
            names = {(s["service"], s["name"], s["kind"]) for s in spans}
            if {("tendril-job", GET_JOB, "SERVER"), ("tendril-lease", LEASE_GET, "SERVER")} <= names:
                break
            assert time.monotonic() < deadline, f"spans of trace {trace_id} so far: {sorted(names)}"
            await asyncio.sleep(0.1)

    # scheduler -> JobService.Dispatch (server span, child of the test's client span)
    dispatch = _find(spans, service="tendril-job", name=DISPATCH, kind="SERVER")
    assert dispatch["parent_span_id"] == f"{client.context.span_id:016x}"
    # JobService -> LeaseService.Get while checking the lease, inside the Dispatch span
    lease_client = _find(spans, service="tendril-job", name=LEASE_GET, kind="CLIENT")
    assert lease_client["parent_span_id"] == dispatch["span_id"]
    lease_server = _find(spans, service="tendril-lease", name=LEASE_GET, kind="SERVER")
    assert lease_server["parent_span_id"] == lease_client["span_id"]
    # JobService -> executor process (TRACEPARENT) -> its job bridge (served by the JobService process)
    executor_call = _find(spans, service="tendril-executor-example", name=GET_JOB, kind="CLIENT")
    assert executor_call["parent_span_id"] == dispatch["span_id"]
    bridge = _find(spans, service="tendril-job", name=GET_JOB, kind="SERVER")
    assert bridge["parent_span_id"] == executor_call["span_id"]
    assert len({dispatch["pid"], lease_server["pid"], executor_call["pid"]}) == 3  # three processes, one trace
