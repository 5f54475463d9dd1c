"""One job's bridge server: a grpc.aio server on ``<work_dir>/bridge.sock`` guarded by a token.

NOTE (rebuilt after a JobService restart): a bridge lives in the JobService process, so it
dies with it while the job's executor runs on. The restarted JobService builds a new
:class:`JobBridge` for the job with the same descriptor and token (kept in ``jobs.db``) on the
same socket path (gRPC replaces the stale socket file); what the old one kept in memory is
rebuilt or re-derived: the job at the DataFetcher is opened again (``OpenJob`` of an open job
is a no-op, so the prefetched slices stay), the copies of sent updates are found again in
``.sent/`` (:class:`~tendril.bridge.core.BridgeCore`), and the progress relay starts from
"continue" until the scheduler's next answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import grpc

from tendril.bridge.auth import TokenInterceptor
from tendril.bridge.core import BridgeCore, ProgressSink
from tendril.bridge.errors import BridgeError
from tendril.bridge.remotes import Remotes
from tendril.bridge.resources import ResourceCache
from tendril.bridge.servicer import SERVICE_NAME, BridgeServicer
from tendril.core.errors import ErrorKind, PortInUseError
from tendril.core.logs import get_logger
from tendril.core.server import Binding, ServiceServer
from tendril_proto.bridge.v1 import bridge_pb2_grpc
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_sdk.job import JobDescriptor
from tendril_sdk.reasons import BridgeReason

log = get_logger("tendril.bridge")

# Unix socket paths are limited to 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
# Reports still queued for the scheduler when the job ends get this long to arrive.
PROGRESS_FLUSH_SECONDS = 2.0
RELEASE_TIMEOUT_SECONDS = 2.0


class JobBridge:
    """Serve JobBridgeService for one job until :meth:`stop`."""

    def __init__(
        self,
        job: JobDescriptor,
        token: str,
        *,
        data_fetcher_address: str,
        paramserver_address: str,
        on_progress: ProgressSink | None = None,
        fetch_roots: Sequence[Path] = (),
        resources: ResourceCache | None = None,
        handoff: Path | None = None,
    ) -> None:
        """``data_fetcher_address`` and ``paramserver_address`` are this worker's own DataFetcher
        and parameter server (``config.listen(...)``); ``fetch_roots`` the directories besides
        the work dir a file:// FetchResource may read (``job.fetch_roots``); ``resources`` the
        worker's cache of fetched resources; ``handoff`` the job's folder held in memory (handoff/)."""
        self.job = job
        self.core = BridgeCore(job, on_progress, fetch_roots=fetch_roots, resources=resources, handoff=handoff)
        self.remotes = Remotes(job.worker_id)
        self.servicer = BridgeServicer(self.core, self.remotes, data_fetcher_address, paramserver_address)
        self.server = ServiceServer(
            f"unix:{job.socket_path}",
            [Binding(SERVICE_NAME, bridge_pb2_grpc.add_JobBridgeServiceServicer_to_server, self.servicer)],
            config_key="worker.work_dir",
            interceptors=[TokenInterceptor(token)],
        )
        self._opener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on the job's socket (0600); open the job at the DataFetcher in the background."""
        try:
            await self.server.start()
        except PortInUseError as exc:
            raise BridgeError(
                ErrorKind.INTERNAL,
                f"cannot listen on the bridge socket {self.job.socket_path}; check that the work dir is writable",
                reason=BridgeReason.BRIDGE_SOCKET_FAILED,
            ) from exc
        os.chmod(self.job.socket_path, 0o600)
        if self.job.coordinator_address:
            self._opener = asyncio.create_task(self._open_data_job())

    async def _open_data_job(self) -> None:
        # NOTE: best effort at start so prefetching begins before the executor asks; a failure
        # here is retried by the first NextSlice, which then reports it to the executor.
        try:
            await self.servicer.open_data_job()
        except BridgeError as exc:
            log.warning("bridge.open_data_job_failed", job_id=self.job.job_id, error=exc.message)

    async def stop(self) -> None:
        """Stop serving, close the job at the DataFetcher, remove the socket."""
        if self._opener is not None:
            self._opener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opener
        await self.server.stop(grace=0.5)
        await self.servicer.progress.close(timeout=PROGRESS_FLUSH_SECONDS)
        await self.servicer.close_data_job()
        await self.remotes.close()
        self.core.close()
        with contextlib.suppress(FileNotFoundError):
            self.job.socket_path.unlink()


async def release(job: JobDescriptor, *, data_fetcher_address: str) -> None:
    """Close what a job's bridge held outside the JobService, for a job that ended without one.

    A job whose executor ended (or was stopped) while the JobService was down had no bridge to
    close its job at the DataFetcher (which would otherwise keep prefetching for it). A failure
    is logged, never raised; a job that was never opened there is fine.
    """
    if not job.coordinator_address:
        return
    remotes = Remotes(job.worker_id)
    try:
        stub = data_pb2_grpc.DataFetcherServiceStub(remotes.channel(data_fetcher_address))
        await stub.CloseJob(data_pb2.CloseJobRequest(job_id=job.job_id), timeout=RELEASE_TIMEOUT_SECONDS)
        log.info("bridge.data_job_released", job_id=job.job_id)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            log.warning("bridge.close_data_job_failed", job_id=job.job_id, code=exc.code().name)
    finally:
        await remotes.close()
