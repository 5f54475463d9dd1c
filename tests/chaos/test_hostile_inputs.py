"""Hostile input against real servers: every service of a running worker (`tendril worker run`,
the embedded gateway included), a data node, a job's bridge (through the example executor) and
the reference scheduler's servicers.

Each case sends one malformed or hostile request and checks the answer: the right status code,
the declared reason where the service gives one, and a message that says what is wrong in a
bounded number of bytes (a 1 MB id never comes back whole). Afterwards every service still
serves and none restarted: no input crashes a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.core.channel import open_channel
from tendril.core.errors import MAX_ERROR_MESSAGE_BYTES
from tendril.core.ports import free_port
from tendril.core.registry_client import list_records
from tendril.core.server import Binding, ServiceServer
from tendril.data_node.corpus import stdlib_corpus
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.tokenizer import ByteTokenizer
from tendril.scheduler.jobconfig import parse_job_config
from tendril.scheduler.run import Run
from tendril.scheduler.servicer import AllocationServicer, CoordinationServicer
from tendril_proto.arbiter.v1 import arbiter_pb2, arbiter_pb2_grpc
from tendril_proto.common.v1 import common_pb2
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tendril_sdk.errors import error_reason, error_retry_delay
from tests.integration.live_worker import (
    EXAMPLE,
    HEALTH_NAMES,
    SCHEDULER,
    LiveWorker,
    live_worker,
    renewable_lease,
    wait_all_serving,
)
from tests.procs import running, spawn, wait_serving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HUGE = "x" * (1 << 20)  # a 1 MB id
GARBAGE = b"\xff\xff\xff\xff"  # no protobuf message parses from this
NAN, INF = math.nan, math.inf


@dataclasses.dataclass
class Network:
    worker: LiveWorker
    data_node: str
    scheduler: str
    fetch_root: Path  # the one directory (besides its work dir) a job may fetch file:// URIs from

    def address(self, service: str) -> str:
        if service == "data_node":
            return self.data_node
        if service == "scheduler":
            return self.scheduler
        if service == "gateway":
            return self.worker.config.gateway.embedded_listen
        return self.worker.config.listen(service)


@contextlib.contextmanager
def _data_node(folder: Path) -> Iterator[str]:
    options = PrepareOptions(seq_len=64, sequences_per_slice=64, max_bytes=40_000, dataset_id="std", progress=False)
    prepare_dataset(stdlib_corpus(), folder / "ds", ByteTokenizer(), options)
    address = f"127.0.0.1:{free_port()}"
    proc = spawn(
        [sys.executable, "-m", "tendril.data_node", "serve", str(folder / "ds"), "--listen", address],
        log=folder / "data_node.log",
    )
    with running(proc):
        yield address


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    tmp = tmp_path_factory.mktemp("hostile")
    root = tmp / "allowed"
    root.mkdir()
    (root / "model.bin").write_bytes(b"weights")
    with live_worker(tmp, job__fetch_roots=str(root)) as worker, _data_node(tmp) as data_node:
        asyncio.run(wait_all_serving(worker))
        asyncio.run(wait_serving(data_node, "tendril.data.v1.DataNodeService"))
        yield Network(worker, data_node, "", root)
        statuses = worker.status().get("children", {})
    # No input took a service down: none restarted while the module ran.
    restarted = {name: c.get("restarts") for name, c in statuses.items() if c.get("restarts")}
    assert not restarted, f"services restarted: {restarted}\n{worker.output()[-3000:]}"


@contextlib.asynccontextmanager
async def _scheduler() -> AsyncIterator[str]:
    """The reference scheduler's servicers on a ServiceServer (a run that dispatched nothing)."""
    run = Run(parse_job_config({"allocation": {"workers": 1}, "training": {"rounds": 2, "inner_steps": 4}}), "hostile")
    server = ServiceServer(
        "127.0.0.1:0",
        [
            Binding(
                "tendril.scheduler.v1.AllocationService",
                scheduler_pb2_grpc.add_AllocationServiceServicer_to_server,
                AllocationServicer(run, lambda member: None),
            ),
            Binding(
                "tendril.scheduler.v1.CoordinationService",
                scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server,
                CoordinationServicer(run),
            ),
        ],
        config_key="scheduler.listen",
    )
    await server.start()
    try:
        yield server.address
    finally:
        await server.stop(0)


# -- the answers ----------------------------------------------------------------------------------


async def _answer(call: Awaitable[Any] | AsyncIterator[Any]) -> grpc.aio.AioRpcError:
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:  # type: ignore[union-attr]
                pass
        else:
            await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the hostile request was accepted")


def _check(err: grpc.aio.AioRpcError, code: grpc.StatusCode, reason: str | None, says: str) -> None:
    details = err.details() or ""
    assert err.code() == code, f"{err.code().name}: {details[:300]}"
    if reason is not None:
        assert error_reason(err) == reason, (error_reason(err), details[:300])
    assert says in details, details[:300]
    assert len(details.encode()) <= MAX_ERROR_MESSAGE_BYTES, len(details)
    assert "Traceback" not in details and "<class" not in details and "Unexpected" not in details, details


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def _raw(channel: grpc.aio.Channel, method: str, shape: str) -> Any:
    """A call of ``method`` that sends GARBAGE as its request bytes."""
    kw = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    if shape == "unary":
        return channel.unary_unary(method, **kw)(GARBAGE, timeout=10)
    if shape == "server-stream":
        return channel.unary_stream(method, **kw)(GARBAGE, timeout=10)

    async def requests() -> AsyncIterator[bytes]:
        yield GARBAGE

    return channel.stream_unary(method, **kw)(requests(), timeout=10)


MALFORMED = [
    ("lease", "/tendril.lease.v1.LeaseService/Get", "unary"),
    ("lease", "/tendril.lease.v1.LeaseService/Watch", "server-stream"),
    ("job", "/tendril.job.v1.JobService/Dispatch", "unary"),
    ("job", "/tendril.job.v1.JobService/Logs", "server-stream"),
    ("job", "/tendril.job.v1.JobService/FetchResult", "server-stream"),
    ("arbiter", "/tendril.arbiter.v1.ArbiterService/Solicit", "unary"),
    ("data_fetcher", "/tendril.data.v1.DataFetcherService/OpenJob", "unary"),
    ("paramserver", "/tendril.paramserver.v1.ParameterServerService/OpenJob", "unary"),
    ("paramserver", "/tendril.paramserver.v1.ParameterServerService/PullUpdate", "server-stream"),
    ("paramserver", "/tendril.paramserver.v1.ParameterServerService/PushUpdate", "client-stream"),
    ("gateway", "/tendril.gateway.v1.RegistryService/Put", "unary"),
    ("gateway", "/tendril.gateway.v1.BusService/Subscribe", "server-stream"),
    ("data_node", "/tendril.data.v1.DataNodeService/FetchSlice", "server-stream"),
]


@pytest.mark.parametrize(("service", "method", "shape"), MALFORMED, ids=[m for _, m, _ in MALFORMED])
async def test_malformed_request_bytes(network: Network, service: str, method: str, shape: str) -> None:
    async with open_channel(network.address(service), peer_id=SCHEDULER) as channel:
        err = await _answer(_raw(channel, method, shape))
    _check(err, grpc.StatusCode.INVALID_ARGUMENT, None, "could not be parsed")


async def test_malformed_request_bytes_at_the_scheduler() -> None:
    async with _scheduler() as address, open_channel(address, peer_id="w") as channel:
        err = await _answer(_raw(channel, "/tendril.scheduler.v1.CoordinationService/ReportProgress", "unary"))
    _check(err, grpc.StatusCode.INVALID_ARGUMENT, None, "could not be parsed")


# -- one case: (service, request builder on a channel, code, reason, words in the message) --------

Call = Callable[[grpc.aio.Channel], Any]
EX = common_pb2.ExecutorRef(executor_class=EXAMPLE[0], name=EXAMPLE[1])
BAD = grpc.StatusCode.INVALID_ARGUMENT


def _job(ch: grpc.aio.Channel) -> job_pb2_grpc.JobServiceStub:
    return job_pb2_grpc.JobServiceStub(ch)


def _ps(ch: grpc.aio.Channel) -> paramserver_pb2_grpc.ParameterServerServiceStub:
    return paramserver_pb2_grpc.ParameterServerServiceStub(ch)


def _df(ch: grpc.aio.Channel) -> data_pb2_grpc.DataFetcherServiceStub:
    return data_pb2_grpc.DataFetcherServiceStub(ch)


def _dispatch(**fields: Any) -> Call:
    values: dict[str, Any] = {"job_id": "hostile-1", "lease_id": "lease-x", "executor": EX}
    values.update(fields)
    return lambda ch: _job(ch).Dispatch(job_pb2.DispatchRequest(**values), timeout=10)


def _solicit(**changes: Any) -> Call:
    request = arbiter_pb2.ResourceRequest(
        request_id="r-1",
        scheduler=common_pb2.PeerRef(id=SCHEDULER, address="127.0.0.1:1"),
        resources=common_pb2.Resources(cpu=1),
        executors=[EX],
        bid=200,
        deadline=timestamp_pb2.Timestamp(seconds=int(time.time()) + 30),
    )
    for name, value in changes.items():
        if isinstance(value, timestamp_pb2.Timestamp | common_pb2.PeerRef | common_pb2.Resources):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return lambda ch: arbiter_pb2_grpc.ArbiterServiceStub(ch).Solicit(
        arbiter_pb2.SolicitRequest(request=request), timeout=10
    )


def _open_run(**fields: Any) -> Call:
    values: dict[str, Any] = {"run_id": "hostile", "expected_workers": 1}
    values.update(fields)
    return lambda ch: _ps(ch).OpenJob(paramserver_pb2.OpenJobRequest(**values), timeout=10)


def _pull(**fields: Any) -> Call:
    values: dict[str, Any] = {"run_id": "hostile", "round": 0, "timeout_seconds": 0.0}
    values.update(fields)
    return lambda ch: _ps(ch).PullUpdate(paramserver_pb2.PullUpdateRequest(**values), timeout=10)


def _reserve(**fields: Any) -> Call:
    values: dict[str, Any] = {"owner_id": SCHEDULER, "resources": common_pb2.Resources(cpu=1), "price": 100}
    values.update(fields)
    return lambda ch: lease_pb2_grpc.LeaseServiceStub(ch).Reserve(lease_pb2.ReserveRequest(**values), timeout=10)


CASES: list[tuple[str, str, Call, grpc.StatusCode, str | None, str]] = [
    # Huge ids: refused by their rule, the message bounded (no "metadata size exceeds hard limit").
    (
        "job Get 1 MB id",
        "job",
        lambda ch: _job(ch).Get(job_pb2.GetRequest(job_id=HUGE), timeout=10),
        BAD,
        "BAD_JOB_ID",
        "1048576 characters",
    ),
    (
        "job Logs 1 MB id",
        "job",
        lambda ch: _job(ch).Logs(job_pb2.LogsRequest(job_id=HUGE), timeout=10),
        BAD,
        "BAD_JOB_ID",
        "job id",
    ),
    (
        "job ListResults 1 MB id",
        "job",
        lambda ch: _job(ch).ListResults(job_pb2.ListResultsRequest(job_id=HUGE), timeout=10),
        BAD,
        "BAD_JOB_ID",
        "job id",
    ),
    (
        "job FetchResult 1 MB path",
        "job",
        lambda ch: _job(ch).FetchResult(job_pb2.FetchResultRequest(job_id="any-job", path=HUGE), timeout=10),
        BAD,
        "BAD_RESULT_PATH",
        "4096 bytes",
    ),
    (
        "job Cancel 1 MB id",
        "job",
        lambda ch: _job(ch).Cancel(job_pb2.CancelRequest(job_id=HUGE), timeout=10),
        BAD,
        "BAD_JOB_ID",
        "job id",
    ),
    (
        "job Watch 1 MB id",
        "job",
        lambda ch: _job(ch).Watch(job_pb2.WatchRequest(job_id=HUGE), timeout=10),
        BAD,
        "BAD_JOB_ID",
        "job id",
    ),
    (
        "job Cancel 1 MB reason",
        "job",
        lambda ch: _job(ch).Cancel(job_pb2.CancelRequest(job_id="j", reason=HUGE), timeout=10),
        BAD,
        "REASON_TOO_LONG",
        "at most 1024",
    ),
    ("job Dispatch 1 MB job id", "job", _dispatch(job_id=HUGE), BAD, "BAD_JOB_ID", "job id"),
    ("job Dispatch 1 MB lease id", "job", _dispatch(lease_id=HUGE), BAD, "BAD_LEASE_ID", "1-256 characters"),
    (
        "lease Get 1 MB id",
        "lease",
        lambda ch: lease_pb2_grpc.LeaseServiceStub(ch).Get(lease_pb2.GetRequest(lease_id=HUGE), timeout=10),
        BAD,
        "LEASE_ID_TOO_LONG",
        "at most 256",
    ),
    (
        "fetcher NextSlice 1 MB id",
        "data_fetcher",
        lambda ch: _df(ch).NextSlice(data_pb2.NextSliceRequest(job_id=HUGE), timeout=10),
        BAD,
        "BAD_JOB_ID",
        "job id",
    ),
    (
        "fetcher CloseJob 1 MB id",
        "data_fetcher",
        lambda ch: _df(ch).CloseJob(data_pb2.CloseJobRequest(job_id=HUGE), timeout=10),
        BAD,
        "BAD_JOB_ID",
        "job id",
    ),
    (
        "fetcher OpenJob 1 MB worker id",
        "data_fetcher",
        lambda ch: _df(ch).OpenJob(
            data_pb2.OpenJobRequest(job_id="j", worker_id=HUGE, coordinator_address="127.0.0.1:1"), timeout=10
        ),
        BAD,
        "BAD_WORKER_ID",
        "peer id",
    ),
    (
        "ps GetRound 1 MB run id",
        "paramserver",
        lambda ch: _ps(ch).GetRound(paramserver_pb2.GetRoundRequest(run_id=HUGE), timeout=10),
        BAD,
        "BAD_RUN_ID",
        "run id",
    ),
    (
        "ps WatchRound 1 MB run id",
        "paramserver",
        lambda ch: _ps(ch).WatchRound(paramserver_pb2.WatchRoundRequest(run_id=HUGE), timeout=10),
        BAD,
        "BAD_RUN_ID",
        "run id",
    ),
    ("ps PullUpdate 1 MB worker id", "paramserver", _pull(worker_id=HUGE), BAD, "BAD_WORKER_ID", "peer id"),
    (
        "ps SetExpectedWorkers 1 MB worker id",
        "paramserver",
        lambda ch: _ps(ch).SetExpectedWorkers(
            paramserver_pb2.SetExpectedWorkersRequest(run_id="hostile", worker_ids=["w1", HUGE]), timeout=10
        ),
        BAD,
        "BAD_WORKER_ID",
        "peer id",
    ),
    ("ps OpenJob 1 MB owner", "paramserver", _open_run(owner_id=HUGE), BAD, "BAD_WORKER_ID", "peer id"),
    (
        "registry Get 1 MB id",
        "gateway",
        lambda ch: gateway_pb2_grpc.RegistryServiceStub(ch).Get(
            gateway_pb2.GetRequest(kind="worker", id=HUGE), timeout=10
        ),
        BAD,
        "ID_TOO_LONG",
        "at most",
    ),
    (
        "arbiter Solicit 1 MB scheduler id",
        "arbiter",
        _solicit(scheduler=common_pb2.PeerRef(id=HUGE, address="127.0.0.1:1")),
        BAD,
        "REQUEST_INVALID",
        "peer id",
    ),
    (
        "data node GetManifest 1 MB id",
        "data_node",
        lambda ch: data_pb2_grpc.DataNodeServiceStub(ch).GetManifest(
            data_pb2.GetManifestRequest(dataset_id=HUGE), timeout=10
        ),
        grpc.StatusCode.NOT_FOUND,
        "DATASET_NOT_FOUND",
        "gateway registry",
    ),
    # NaN and Inf.
    (
        "job Dispatch NaN in config",
        "job",
        _dispatch(config=_struct({"lr": NAN})),
        BAD,
        "BAD_CONFIG",
        "config.lr is not a finite number",
    ),
    (
        "job Dispatch Inf deep in config",
        "job",
        _dispatch(config=_struct({"a": {"b": [1, INF]}})),
        BAD,
        "BAD_CONFIG",
        "config.a.b[1]",
    ),
    ("ps PullUpdate NaN timeout", "paramserver", _pull(timeout_seconds=NAN), BAD, "BAD_TIMEOUT", "finite number >= 0"),
    ("ps PullUpdate Inf timeout", "paramserver", _pull(timeout_seconds=INF), BAD, "BAD_TIMEOUT", "finite number >= 0"),
    (
        "ps OpenJob NaN round timeout",
        "paramserver",
        _open_run(round_timeout_seconds=NAN),
        BAD,
        "BAD_RUN_CONFIG",
        "finite",
    ),
    ("ps OpenJob Inf outer_lr", "paramserver", _open_run(outer_lr=INF), BAD, "BAD_RUN_CONFIG", "finite"),
    ("arbiter Solicit NaN bid", "arbiter", _solicit(bid=NAN), BAD, "REQUEST_INVALID", "bid"),
    (
        "arbiter Solicit Inf cpu",
        "arbiter",
        _solicit(resources=common_pb2.Resources(cpu=INF)),
        BAD,
        "REQUEST_INVALID",
        "finite",
    ),
    (
        "registry Put NaN ttl",
        "gateway",
        lambda ch: gateway_pb2_grpc.RegistryServiceStub(ch).Put(
            gateway_pb2.PutRequest(record=gateway_pb2.Record(kind="k", id="i", ttl_seconds=NAN)), timeout=10
        ),
        BAD,
        "TTL_INVALID",
        "ttl_seconds",
    ),
    # Durations, Timestamps and enums out of range.
    (
        "job Dispatch timeout 2^62 s",
        "job",
        _dispatch(timeout=duration_pb2.Duration(seconds=2**62)),
        BAD,
        "BAD_TIMEOUT",
        "not a valid Duration",
    ),
    (
        "job Dispatch timeout nanos 2e9",
        "job",
        _dispatch(timeout=duration_pb2.Duration(seconds=1, nanos=2_000_000_000)),
        BAD,
        "BAD_TIMEOUT",
        "nanos",
    ),
    (
        "job Dispatch timeout of mixed signs",
        "job",
        _dispatch(timeout=duration_pb2.Duration(seconds=5, nanos=-1)),
        BAD,
        "BAD_TIMEOUT",
        "sign",
    ),
    (
        "job Dispatch negative timeout",
        "job",
        _dispatch(timeout=duration_pb2.Duration(seconds=-5)),
        BAD,
        "BAD_TIMEOUT",
        ">= 0",
    ),
    (
        "job Dispatch timeout of two years",
        "job",
        _dispatch(timeout=duration_pb2.Duration(seconds=2 * 365 * 86400)),
        BAD,
        "BAD_TIMEOUT",
        "<= 3.16224e+07",
    ),
    (
        "job List states [99]",
        "job",
        lambda ch: _job(ch).List(job_pb2.ListRequest(states=[99]), timeout=10),
        BAD,
        "BAD_STATE",
        "states 99 is not one of",
    ),
    (
        "job List states [UNSPECIFIED]",
        "job",
        lambda ch: _job(ch).List(job_pb2.ListRequest(states=[0]), timeout=10),
        BAD,
        "BAD_STATE",
        "JOB_STATE_PENDING",
    ),
    (
        "arbiter Solicit deadline 2^62 s",
        "arbiter",
        _solicit(deadline=timestamp_pb2.Timestamp(seconds=2**62)),
        BAD,
        "REQUEST_INVALID",
        "not a valid Timestamp",
    ),
    (
        "arbiter Solicit deadline nanos 2e9",
        "arbiter",
        _solicit(deadline=timestamp_pb2.Timestamp(seconds=int(time.time()) + 30, nanos=2_000_000_000)),
        BAD,
        "REQUEST_INVALID",
        "nanos",
    ),
    ("ps OpenJob codec 99", "paramserver", _open_run(codec=99), BAD, "BAD_CODEC", "codec"),
    ("ps PullUpdate codec 99", "paramserver", _pull(codec=99), BAD, "BAD_CODEC", "codec"),
    # One rule per kind of id, the same in every service.
    (
        "ps OpenJob run id '.x'",
        "paramserver",
        _open_run(run_id=".x"),
        BAD,
        "BAD_RUN_ID",
        "starting with a letter or digit",
    ),
    ("ps OpenJob run id 'a/b'", "paramserver", _open_run(run_id="a/b"), BAD, "BAD_RUN_ID", "run id"),
    ("job Dispatch job id 'a/b'", "job", _dispatch(job_id="a/b"), BAD, "BAD_JOB_ID", "1-64 characters"),
    (
        "fetcher OpenJob job id 'a/b'",
        "data_fetcher",
        lambda ch: _df(ch).OpenJob(
            data_pb2.OpenJobRequest(job_id="a/b", worker_id="w", coordinator_address="127.0.0.1:1"), timeout=10
        ),
        BAD,
        "BAD_JOB_ID",
        "1-64 characters",
    ),
    (
        "fetcher OpenJob 65-character job id",
        "data_fetcher",
        lambda ch: _df(ch).OpenJob(
            data_pb2.OpenJobRequest(job_id="j" * 65, worker_id="w", coordinator_address="127.0.0.1:1"), timeout=10
        ),
        BAD,
        "BAD_JOB_ID",
        "1-64 characters",
    ),
    ("job Dispatch 65-character job id", "job", _dispatch(job_id="j" * 65), BAD, "BAD_JOB_ID", "1-64 characters"),
    (
        "fetcher OpenJob worker id with a space",
        "data_fetcher",
        lambda ch: _df(ch).OpenJob(
            data_pb2.OpenJobRequest(job_id="j", worker_id="w 1", coordinator_address="127.0.0.1:1"), timeout=10
        ),
        BAD,
        "BAD_WORKER_ID",
        "peer id",
    ),
    ("ps PullUpdate worker id with a newline", "paramserver", _pull(worker_id="w\n1"), BAD, "BAD_WORKER_ID", "peer id"),
    # Path tricks.
    (
        "data node FetchSlice '../manifest.json'",
        "data_node",
        lambda ch: data_pb2_grpc.DataNodeServiceStub(ch).FetchSlice(
            data_pb2.FetchSliceRequest(slice_name="../manifest.json"), timeout=10
        ),
        BAD,
        "BAD_SLICE_NAME",
        "not a plain file name",
    ),
    (
        "data node FetchSlice '/etc/passwd'",
        "data_node",
        lambda ch: data_pb2_grpc.DataNodeServiceStub(ch).FetchSlice(
            data_pb2.FetchSliceRequest(slice_name="/etc/passwd"), timeout=10
        ),
        BAD,
        "BAD_SLICE_NAME",
        "not a plain file name",
    ),
    ("ps OpenJob run id '..'", "paramserver", _open_run(run_id=".."), BAD, "BAD_RUN_ID", "run id"),
    # The worker's own services are not the caller's: no lease is reserved by a scheduler.
    (
        "lease Reserve by a scheduler",
        "lease",
        _reserve(ttl_seconds=NAN),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_THE_WORKER",
        "only the worker itself",
    ),
]


@pytest.mark.parametrize(
    ("service", "call", "code", "reason", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_hostile_requests(
    network: Network, service: str, call: Call, code: grpc.StatusCode, reason: str | None, says: str
) -> None:
    async with open_channel(network.address(service), peer_id=SCHEDULER) as channel:
        err = await _answer(call(channel))
    _check(err, code, reason, says)


async def test_lease_values_as_the_worker(network: Network) -> None:
    """Reserve is the worker's own call (its arbiter): non-finite numbers are refused there too."""
    config = network.worker.config
    async with open_channel(config.listen("lease"), peer_id=config.worker_id) as channel:
        for fields, reason in (
            ({"ttl_seconds": NAN}, "TTL_INVALID"),
            ({"ttl_seconds": 1e300}, "TTL_INVALID"),
            ({"price": INF}, "PRICE_INVALID"),
            ({"resources": common_pb2.Resources(cpu=NAN)}, "RESOURCES_INVALID"),
            ({"owner_id": HUGE}, "OWNER_ID_TOO_LONG"),
        ):
            _check(await _answer(_reserve(**fields)(channel)), BAD, reason, "")


SCHEDULER_CASES: list[tuple[str, Call, str, str]] = [
    (
        "Offer expires_at 2^62 s",
        lambda ch: scheduler_pb2_grpc.AllocationServiceStub(ch).Offer(
            scheduler_pb2.OfferRequest(
                request_id="r",
                lease_id="l",
                worker=common_pb2.WorkerRecord(
                    worker_id="w", endpoints=common_pb2.WorkerEndpoints(lease="127.0.0.1:1", job="127.0.0.1:2")
                ),
                expires_at=timestamp_pb2.Timestamp(seconds=2**62),
            ),
            timeout=10,
        ),
        "BAD_EXPIRES_AT",
        "not a valid Timestamp",
    ),
    (
        "ReportProgress NaN batch_seconds",
        lambda ch: scheduler_pb2_grpc.CoordinationServiceStub(ch).ReportProgress(
            scheduler_pb2.ReportProgressRequest(
                job_id="j", kind=scheduler_pb2.PROGRESS_KIND_BATCH, batch_size=8, batch_seconds=NAN
            ),
            timeout=10,
        ),
        "BAD_BATCH",
        "batch_seconds must be a finite number",
    ),
]


@pytest.mark.parametrize(
    ("call", "reason", "says"), [c[1:] for c in SCHEDULER_CASES], ids=[c[0] for c in SCHEDULER_CASES]
)
async def test_hostile_requests_at_the_scheduler(call: Call, reason: str, says: str) -> None:
    async with _scheduler() as address, open_channel(address, peer_id="w") as channel:
        _check(await _answer(call(channel)), BAD, reason, says)


# -- a job's bridge: file:// fetches stay inside the allowed directories ---------------------------


async def _run_example(network: Network, job_id: str, fetch: str) -> str:
    """Dispatch the example executor fetching ``fetch``; its log once it ended."""
    config = network.worker.config
    lease = await renewable_lease(config)
    async with open_channel(config.listen("job"), peer_id=SCHEDULER) as channel:
        stub = job_pb2_grpc.JobServiceStub(channel)
        await stub.Dispatch(
            job_pb2.DispatchRequest(
                job_id=job_id, lease_id=lease.lease_id, executor=EX, config=_struct({"fetch": fetch})
            ),
            timeout=30,
        )
        deadline = time.monotonic() + 60
        while (await stub.Get(job_pb2.GetRequest(job_id=job_id), timeout=10)).job.state in (
            job_pb2.JOB_STATE_PENDING,
            job_pb2.JOB_STATE_RUNNING,
        ):
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            await asyncio.sleep(0.1)
        text = "".join([r.text async for r in stub.Logs(job_pb2.LogsRequest(job_id=job_id), timeout=10)])
    async with open_channel(config.listen("lease"), peer_id=SCHEDULER) as channel:
        await lease_pb2_grpc.LeaseServiceStub(channel).Release(
            lease_pb2.ReleaseRequest(lease_id=lease.lease_id), timeout=10
        )
    return text


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/shadow",
        "file:///etc/passwd",
        "file:///etc/no-such-file",
        "file://localhost/../../etc/hostname",
        "file:///proc/self/environ",
        "ROOT/../outside.bin",
    ],
)
async def test_a_job_cannot_fetch_files_outside_its_roots(network: Network, uri: str) -> None:
    outside = network.fetch_root.parent / "outside.bin"
    outside.write_bytes(b"secret")
    job_id = f"fetch-{abs(hash(uri)) % 10**8}"
    text = await _run_example(network, job_id, uri.replace("ROOT", f"file://{network.fetch_root}"))
    # The executor learned neither the file's size nor its hash: the bridge refused the fetch.
    assert "PERMISSION_DENIED" in text and "RESOURCE_OUTSIDE_ROOTS" in text, text[-2000:]
    assert "fetched file://" not in text and "sha256 " not in text


async def test_a_job_fetches_from_a_configured_root(network: Network) -> None:
    text = await _run_example(network, "fetch-allowed", f"file://{network.fetch_root}/model.bin")
    assert "fetched file://" in text and "(7 bytes" in text, text[-2000:]


# -- the gateway's registry: limits and ownership -------------------------------------------------


async def test_three_3_mb_records_are_refused_and_list_keeps_working(network: Network) -> None:
    """Three Puts of 3 MB records once made every List fail (a 9 MB answer over the 8 MiB limit)."""
    config = network.worker.config
    async with open_channel(network.address("gateway"), peer_id="hostile-registry") as channel:
        reg = gateway_pb2_grpc.RegistryServiceStub(channel)
        for i in range(3):
            big = gateway_pb2.Record(kind="worker", id=f"big-{i}", ttl_seconds=60)
            big.payload.type_url = "type.googleapis.com/google.protobuf.BytesValue"
            big.payload.value = b"x" * 3_000_000
            err = await _answer(reg.Put(gateway_pb2.PutRequest(record=big), timeout=10))
            _check(
                err, grpc.StatusCode.INVALID_ARGUMENT, "RECORD_TOO_LARGE", f"at most {config.gateway.max_record_bytes}"
            )
        listed = await reg.List(gateway_pb2.ListRequest(), timeout=10)
        assert ("worker", config.worker_id) in [(r.kind, r.id) for r in listed.records]
        assert all(r.owner_secret_sha256 == b"" for r in listed.records)
        assert [r.id for r in await list_records(reg, "worker", timeout=10)] == [config.worker_id]


async def test_another_callers_record_cannot_be_overwritten_or_deleted(network: Network) -> None:
    config = network.worker.config
    async with open_channel(network.address("gateway"), peer_id=config.worker_id) as channel:
        # NOTE: the forger even names itself as the worker: without mTLS that proves nothing.
        reg = gateway_pb2_grpc.RegistryServiceStub(channel)
        forged = gateway_pb2.Record(kind="worker", id=config.worker_id, ttl_seconds=60)
        for secret in ("", "x" * 43, HUGE):
            err = await _answer(reg.Put(gateway_pb2.PutRequest(record=forged, secret=secret), timeout=10))
            _check(err, grpc.StatusCode.PERMISSION_DENIED, "RECORD_NOT_OWNED", "only its owner")
            err = await _answer(
                reg.Delete(gateway_pb2.DeleteRequest(kind="worker", id=config.worker_id, secret=secret), timeout=10)
            )
            _check(err, grpc.StatusCode.PERMISSION_DENIED, "RECORD_NOT_OWNED", "only its owner")
        record = (await reg.Get(gateway_pb2.GetRequest(kind="worker", id=config.worker_id), timeout=10)).record
        assert record.payload.type_url.endswith("tendril.common.v1.WorkerRecord")


async def test_a_caller_putting_too_fast_is_told_when_to_retry(network: Network) -> None:
    burst = int(network.worker.config.gateway.put_burst)
    async with open_channel(network.address("gateway"), peer_id="hostile-flood") as channel:
        reg = gateway_pb2_grpc.RegistryServiceStub(channel)
        record = gateway_pb2.Record(kind="hostile", id="flood", ttl_seconds=60)
        secret = (await reg.Put(gateway_pb2.PutRequest(record=record), timeout=10)).secret
        # NOTE: all at once, so the bucket (refilled at put_rate) drains however slow the machine is.
        answers = await asyncio.gather(
            *(reg.Put(gateway_pb2.PutRequest(record=record, secret=secret), timeout=30) for _ in range(2 * burst)),
            return_exceptions=True,
        )
        errors = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
        assert errors, f"{2 * burst} Puts at once were all accepted"
        assert not [a for a in answers if isinstance(a, BaseException) and not isinstance(a, grpc.aio.AioRpcError)]
        refused = errors[0]
        _check(refused, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", "retry in")
        delay = error_retry_delay(refused)
        assert delay is not None and 0 < delay <= 1.0
        await reg.Delete(gateway_pb2.DeleteRequest(kind="hostile", id="flood", secret=secret), timeout=10)


# -- afterwards -------------------------------------------------------------------------------------


async def test_every_service_still_serves(network: Network) -> None:
    config = network.worker.config
    for section, name in HEALTH_NAMES.items():
        async with open_channel(config.listen(section), peer_id=SCHEDULER) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=name), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, section
    await wait_serving(network.data_node, "tendril.data.v1.DataNodeService", 10)
    async with open_channel(config.listen("job"), peer_id=SCHEDULER) as channel:
        jobs = (await job_pb2_grpc.JobServiceStub(channel).List(job_pb2.ListRequest(), timeout=10)).jobs
    assert jobs, "the JobService answers and kept its records"
    async with open_channel(network.address("gateway"), peer_id=SCHEDULER) as channel:
        # the worker keeps refreshing its own record (every TTL/3) after the forged Puts and Deletes
        deadline = time.monotonic() + config.gateway.registry_ttl_seconds
        version = 0
        while version < 2 and time.monotonic() < deadline:
            got = await gateway_pb2_grpc.RegistryServiceStub(channel).Get(
                gateway_pb2.GetRequest(kind="worker", id=config.worker_id), timeout=10
            )
            version = got.record.version
            await asyncio.sleep(0.5)
    assert version >= 2, "the worker kept refreshing its own record"
    status = network.worker.status()
    assert status.get("state") == "serving" and not any(
        c.get("restarts") for c in status.get("children", {}).values()
    ), json.dumps(status)[:2000]
