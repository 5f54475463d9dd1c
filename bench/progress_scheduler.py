"""The peers behind the bridge for the ReportProgress figure, as one process on 127.0.0.1.

``python -m bench.progress_scheduler SCHEDULER_PORT BARE_PORT DATA_FETCHER_PORT``

* ``SCHEDULER_PORT``: the scheduler's CoordinationService, built like every Tendril server
  (``ServiceServer``: interceptors, health, reflection), answering every report with CONTINUE.
  This is what the real bridge forwards to.
* ``BARE_PORT``: the same answer from a plain ``grpc.aio`` server without interceptors, the far
  end of the two-hop baseline.
* ``DATA_FETCHER_PORT``: a DataFetcherService that accepts OpenJob/CloseJob, which a bridge
  with a scheduler calls when it starts and stops (nothing else is asked of it here).

Logging is configured as a service's is by default (level info), so per-call debug lines cost
what they cost in production. Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import grpc

from tendril.core.logs import configure
from tendril.core.server import SERVER_OPTIONS, Binding, ServiceServer, run_until_signal
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

COORDINATION = "tendril.scheduler.v1.CoordinationService"
DATA_FETCHER = "tendril.data.v1.DataFetcherService"


class ContinueCoordination(scheduler_pb2_grpc.CoordinationServiceServicer):
    """A scheduler that lets every job go on: CONTINUE for the reported round."""

    async def ReportProgress(
        self, request: scheduler_pb2.ReportProgressRequest, context: Any
    ) -> scheduler_pb2.ReportProgressResponse:
        return scheduler_pb2.ReportProgressResponse(directive=scheduler_pb2.DIRECTIVE_CONTINUE, round=request.round)


class AcceptingDataFetcher(data_pb2_grpc.DataFetcherServiceServicer):
    """Answers the bridge's OpenJob at start and CloseJob at stop."""

    async def OpenJob(self, request: data_pb2.OpenJobRequest, context: Any) -> data_pb2.OpenJobResponse:
        return data_pb2.OpenJobResponse()

    async def CloseJob(self, request: data_pb2.CloseJobRequest, context: Any) -> data_pb2.CloseJobResponse:
        return data_pb2.CloseJobResponse()


async def serve(scheduler_port: int, bare_port: int, data_port: int) -> None:
    scheduler = ServiceServer(
        f"127.0.0.1:{scheduler_port}",
        [Binding(COORDINATION, scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server, ContinueCoordination())],
        config_key="bench.scheduler",
    )
    data = ServiceServer(
        f"127.0.0.1:{data_port}",
        [Binding(DATA_FETCHER, data_pb2_grpc.add_DataFetcherServiceServicer_to_server, AcceptingDataFetcher())],
        config_key="bench.data_fetcher",
    )
    # NOTE: deliberately not a ServiceServer: this is the baseline, a gRPC server with nothing
    # of Tendril's around the handler (no interceptors, health or reflection).
    bare = grpc.aio.server(options=SERVER_OPTIONS)
    scheduler_pb2_grpc.add_CoordinationServiceServicer_to_server(ContinueCoordination(), bare)
    if not bare.add_insecure_port(f"127.0.0.1:{bare_port}"):
        raise SystemExit(f"cannot listen on 127.0.0.1:{bare_port}")

    async def start() -> None:
        await scheduler.start()
        await data.start()
        await bare.start()

    async def stop() -> None:
        await bare.stop(0)
        await data.stop(0)
        await scheduler.stop(0)

    await run_until_signal(start, stop)


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit("usage: python -m bench.progress_scheduler SCHEDULER_PORT BARE_PORT DATA_FETCHER_PORT")
    if not os.environ.get("GLIBC_TUNABLES"):
        print("warning: GLIBC_TUNABLES is not set", file=sys.stderr)
    configure("bench-scheduler", level="info")
    asyncio.run(serve(*(int(a) for a in argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
