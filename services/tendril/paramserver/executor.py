"""The "aggregate" executor: opens a run on its worker's ParameterServer and sees it through.

``python -m tendril.paramserver.executor --socket {SOCKET_PATH}`` (started by
JobService for jobs of class ``aggregate``, name ``diloco``). It reads ``JOB_JSON``, calls
``OpenJob`` with the job's aggregate config (run_id, expected_workers, quorum,
round_timeout_seconds, outer_lr, outer_momentum, codec, rounds), polls ``GetRound`` until
the last round closed, then ``CloseJob`` (the run's θ and last updates stay pullable).

Exit codes: 0 when every round is done; 143 after SIGTERM/SIGINT (the run is closed first,
its state kept on disk so a new aggregate job resumes it); 1 when aggregation failed; 2 for
a bad job config.

The ParameterServer's address: ``--address``, else env ``TENDRIL_PARAMSERVER_ADDRESS``
(JobService sets it to its worker's ``config.listen("paramserver")``), else the worker
config from ``TENDRIL_*`` env and defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from tendril.core import tls, tracing
from tendril.core.channel import error_info_reason, open_channel
from tendril.core.config import load_config
from tendril.core.errors import TendrilError
from tendril.core.logs import configure, get_logger
from tendril.core.streaming import StreamError, codec_to_proto
from tendril.paramserver.errors import ParamserverReason
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc

ADDRESS_ENV = "TENDRIL_PARAMSERVER_ADDRESS"
POLL_SECONDS = 0.5
CONNECT_SECONDS = 60.0  # how long the parameter server may be unreachable before giving up
EXIT_SIGNALLED = 143

log = get_logger("tendril.paramserver.executor")


class JobConfigError(ValueError):
    """The job's config cannot describe an aggregation."""


def open_request(job: dict[str, Any]) -> paramserver_pb2.OpenJobRequest:
    """OpenJobRequest from job.json's dispatch config."""
    config = job.get("config")
    if not isinstance(config, dict):
        raise JobConfigError("job.json has no config object")
    run_id = config.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise JobConfigError("the aggregate job config needs run_id (the DiLoCo run the workers push under)")
    try:
        expected = int(config.get("expected_workers", 0))
        request = paramserver_pb2.OpenJobRequest(
            job_id=run_id,
            expected_workers=expected,
            quorum=int(config.get("quorum", 0)),
            round_timeout_seconds=float(config.get("round_timeout_seconds", 0.0)),
            outer_lr=float(config.get("outer_lr", 0.0)),
            outer_momentum=float(config.get("outer_momentum", 0.0)),
            codec=codec_to_proto(str(config.get("codec", "fp32"))),
            rounds=int(config.get("rounds", 0)),
        )
    except (TypeError, ValueError, StreamError) as exc:
        raise JobConfigError(f"bad aggregate job config: {exc}") from exc
    if expected < 1:
        raise JobConfigError("the aggregate job config needs expected_workers >= 1")
    return request


def resolve_address(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get(ADDRESS_ENV):
        return os.environ[ADDRESS_ENV]
    return load_config(None).listen("paramserver")


def finished(reply: paramserver_pb2.GetRoundResponse, rounds: int) -> bool:
    """The last round no longer takes pushes (CloseJob then waits for its update to be written)."""
    return bool(rounds) and reply.state == paramserver_pb2.ROUND_STATE_CLOSED and reply.round >= rounds - 1


class Aggregation:
    """Open, watch, close."""

    def __init__(self, channel: grpc.aio.Channel, request: paramserver_pb2.OpenJobRequest) -> None:
        self.stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
        self.request = request
        self.stopping = asyncio.Event()

    async def _call(self, method: Any, request: Any) -> Any:
        """Call, retrying while the parameter server is unreachable (it may be restarting)."""
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:
            try:
                return await method(request, timeout=10.0)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline or self.stopping.is_set():
                    raise
                log.warning("paramserver.unreachable", details=err.details())
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def open(self) -> None:
        reply = await self._call(self.stub.OpenJob, self.request)
        log.info("aggregate.opened", run_id=self.request.job_id, round=reply.round, resumed=reply.resumed)

    async def watch(self) -> None:
        """Until the last round closed, or a stop signal."""
        last = None
        get = paramserver_pb2.GetRoundRequest(job_id=self.request.job_id)
        while not self.stopping.is_set():
            try:
                reply = await self._call(self.stub.GetRound, get)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND and error_info_reason(err) == ParamserverReason.RUN_NOT_OPEN:
                    await self.open()  # the parameter server lost the run (restarted elsewhere): reopen
                    continue
                raise
            state = (reply.round, reply.state, len(reply.committed_workers))
            if state != last:
                log.info(
                    "aggregate.round",
                    round=reply.round,
                    state=paramserver_pb2.RoundState.Name(reply.state),
                    committed=list(reply.committed_workers),
                    in_flight=reply.pushes_in_flight,
                )
                last = state
            if finished(reply, self.request.rounds):
                return
            await self._sleep(POLL_SECONDS)

    async def close(self) -> None:
        await self._call(self.stub.CloseJob, paramserver_pb2.CloseJobRequest(job_id=self.request.job_id))
        log.info("aggregate.closed", run_id=self.request.job_id)


async def run(address: str, request: paramserver_pb2.OpenJobRequest, worker_id: str) -> int:
    loop = asyncio.get_running_loop()
    async with open_channel(address, peer_id=worker_id) as channel:
        aggregation = Aggregation(channel, request)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, aggregation.stopping.set)
        try:
            await aggregation.open()
            await aggregation.watch()
            await aggregation.close()
        except grpc.aio.AioRpcError as err:
            log.error("aggregate.failed", code=err.code().name, details=err.details(), reason=error_info_reason(err))
            print(f"aggregate executor: {err.code().name}: {err.details()}", file=sys.stderr)
            return EXIT_SIGNALLED if aggregation.stopping.is_set() else 1
    return EXIT_SIGNALLED if aggregation.stopping.is_set() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tendril aggregate executor (DiLoCo parameter server job)")
    parser.add_argument("--socket", help="the job bridge socket (not needed: the job comes from JOB_JSON)")
    parser.add_argument("--address", help=f"ParameterServer address (default: ${ADDRESS_ENV}, else the worker config)")
    parser.add_argument("--job-json", help="job.json (default: $JOB_JSON)")
    args = parser.parse_args(argv)
    configure("aggregate-executor", fmt="json")
    tracing.setup_executor("aggregate")  # continues the Dispatch trace (TRACEPARENT from JobService)
    job_json = args.job_json or os.environ.get("JOB_JSON")
    if not job_json:
        print("aggregate executor: no job: pass --job-json or set JOB_JSON", file=sys.stderr)
        return 2
    try:
        job = json.loads(Path(job_json).read_text())
        request = open_request(job)
    except (OSError, json.JSONDecodeError, JobConfigError) as exc:
        print(f"aggregate executor: {exc}", file=sys.stderr)
        return 2
    try:
        # NOTE: the worker's services export TENDRIL_TLS_* to the executors they start: under
        # mTLS the parameter server wants this worker's certificate on the call.
        tls.configure_from_env(expected_name=str(job.get("worker_id", "")))
    except TendrilError as exc:
        print(f"aggregate executor: {exc.message}", file=sys.stderr)
        return 2
    address = resolve_address(args.address)
    log.info("aggregate.start", run_id=request.job_id, address=address, job_id=job.get("job_id"))
    return asyncio.run(run(address, request, str(job.get("worker_id", ""))))


if __name__ == "__main__":
    sys.exit(main())
