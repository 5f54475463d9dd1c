"""The bridge side of the ReportProgress figure, as its own process (JobService's role).

``python -m bench.progress_bridge WORK_DIR SCHEDULER BARE_SCHEDULER DATA_FETCHER``
(token in env ``TENDRIL_BRIDGE_TOKEN``) serves, on Unix sockets under ``WORK_DIR``:

* ``job-bench/bridge.sock``: a real :class:`JobBridge` for one job whose scheduler is
  ``SCHEDULER``, built exactly as JobService builds one (token, server factory, progress sink);
* ``bare.sock``: the one-hop baseline, JobBridgeService.ReportProgress answered at once by a
  plain ``grpc.aio`` server (no interceptors, no token, no peer behind it);
* ``forward.sock``: the two-hop baseline, the same plain server passing the report on to the
  plain CoordinationService at ``BARE_SCHEDULER`` — the bridge's route with nothing of Tendril's.

Logging is configured as JobService's is by default (level info). Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from tendril.bridge.auth import TOKEN_ENV
from tendril.bridge.core import WORK_SUBDIRS
from tendril.bridge.server import JobBridge
from tendril.core.channel import open_channel
from tendril.core.logs import configure
from tendril.core.server import SERVER_OPTIONS, run_until_signal
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tendril_sdk.job import ExecutorRef, JobDescriptor

JOB_DIR = "job-bench"
BRIDGE_SOCKET = f"{JOB_DIR}/bridge.sock"
BARE_SOCKET = "bare.sock"
FORWARD_SOCKET = "forward.sock"
FORWARD_TIMEOUT_SECONDS = 10.0


class BareBridge(bridge_pb2_grpc.JobBridgeServiceServicer):
    """ReportProgress answered in place: CONTINUE for the reported round."""

    async def ReportProgress(
        self, request: bridge_pb2.ReportProgressRequest, context: Any
    ) -> bridge_pb2.ReportProgressResponse:
        directive = scheduler_pb2.ReportProgressResponse(
            directive=scheduler_pb2.DIRECTIVE_CONTINUE, round=request.progress.round
        )
        return bridge_pb2.ReportProgressResponse(directive=directive)


class ForwardingBridge(bridge_pb2_grpc.JobBridgeServiceServicer):
    """ReportProgress passed on to a scheduler, with nothing else done."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = scheduler_pb2_grpc.CoordinationServiceStub(channel)

    async def ReportProgress(
        self, request: bridge_pb2.ReportProgressRequest, context: Any
    ) -> bridge_pb2.ReportProgressResponse:
        directive = await self._stub.ReportProgress(request.progress, timeout=FORWARD_TIMEOUT_SECONDS)
        return bridge_pb2.ReportProgressResponse(directive=directive)


def bare_server(socket_path: Path, servicer: bridge_pb2_grpc.JobBridgeServiceServicer) -> grpc.aio.Server:
    # NOTE: deliberately not a ServiceServer: the baselines are gRPC with nothing of Tendril's
    # around the handler (no interceptors, health or reflection).
    server = grpc.aio.server(options=SERVER_OPTIONS)
    bridge_pb2_grpc.add_JobBridgeServiceServicer_to_server(servicer, server)
    if not server.add_insecure_port(f"unix:{socket_path}"):
        raise SystemExit(f"cannot listen on {socket_path}")
    return server


def bench_job(work: Path, scheduler: str) -> JobDescriptor:
    """The job as JobService hands it to its bridge: a 0700 work dir with the usual subdirs."""
    job_dir = work / JOB_DIR
    job_dir.mkdir(mode=0o700)
    for sub in WORK_SUBDIRS:
        (job_dir / sub).mkdir()
    return JobDescriptor(
        job_id="bench",
        worker_id="bench-worker",
        lease_id="bench-lease",
        owner_id="bench-scheduler",
        executor=ExecutorRef("train", "diloco"),
        config={"run_id": "bench"},
        work_dir=job_dir,
        socket_path=work / BRIDGE_SOCKET,
        coordinator_address=scheduler,
    )


async def serve(work: Path, scheduler: str, bare_scheduler: str, data_fetcher: str, token: str) -> None:
    progress: dict[str, dict[str, float]] = {}

    def on_progress(job_id: str, values: dict[str, float]) -> None:
        progress.setdefault(job_id, {}).update(values)  # what JobManager.report_progress keeps

    bridge = JobBridge(
        bench_job(work, scheduler),
        token,
        data_fetcher_address=data_fetcher,
        paramserver_address="127.0.0.1:1",  # no run of its own: an "aggregate" job is not measured here
        on_progress=on_progress,
    )
    forward_channel = open_channel(bare_scheduler)
    bare = bare_server(work / BARE_SOCKET, BareBridge())
    forward = bare_server(work / FORWARD_SOCKET, ForwardingBridge(forward_channel))

    async def start() -> None:
        await bridge.start()
        await bare.start()
        await forward.start()

    async def stop() -> None:
        await forward.stop(0)
        await bare.stop(0)
        await forward_channel.close()
        await bridge.stop()

    await run_until_signal(start, stop)


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        raise SystemExit("usage: python -m bench.progress_bridge WORK_DIR SCHEDULER BARE_SCHEDULER DATA_FETCHER")
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"set {TOKEN_ENV} to the token the client will send")
    if not os.environ.get("GLIBC_TUNABLES"):
        print("warning: GLIBC_TUNABLES is not set", file=sys.stderr)
    configure("jobs", level="info")
    asyncio.run(serve(Path(argv[0]), argv[1], argv[2], argv[3], token))


if __name__ == "__main__":
    main(sys.argv[1:])
