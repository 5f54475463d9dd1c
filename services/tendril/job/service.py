"""Wiring of the JobService process: store, lease client, bridges, manager and gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tendril.bridge.core import ProgressSink
from tendril.bridge.resources import FOLDER as RESOURCES
from tendril.bridge.resources import ResourceCache
from tendril.bridge.server import JobBridge
from tendril.bridge.server import release as release_bridge
from tendril.core import liveness, tensorstream
from tendril.core.config import WorkerConfig
from tendril.core.server import Binding, ServiceServer
from tendril.job.core import JobManager
from tendril.job.leases import LeaseClient
from tendril.job.readiness import CHECK_SECONDS
from tendril.job.servicer import SERVICE_NAME, JobServicer
from tendril.job.store import JobStore
from tendril_proto.job.v1 import job_pb2_grpc
from tendril_sdk.job import JobDescriptor

# The longest one readiness check may take besides its wait on the disk (a read of jobs.db).
READINESS_STEP_SECONDS = 2.0
RESULTS_PRUNE_SECONDS = 3600.0  # kept results past job.keep_results_days / _mib are deleted this often


class JobService:
    """The JobService process: reconcile (re-adopt running executors), serve, follow leases, retry
    failed clean-ups; stop cancels every job."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        # The job bridges' pushes and pulls use at most this many connections each.
        tensorstream.configure(config.paramserver.data_streams)
        self.store = JobStore(config.state_dir / "jobs.db")
        # NOTE: beside the DataFetcher's slice cache (<state_dir>/cache), bounded like it.
        self.resources = ResourceCache(config.state_dir / "cache" / RESOURCES, config.data_fetcher.cache_bytes)
        self.leases = LeaseClient(config.listen("lease"), config.worker_id)
        self.manager = JobManager(
            config, self.store, self.leases, self._start_bridge, release_bridge=self._release_bridge
        )
        self.server = ServiceServer(
            config.listen("job"),
            [Binding(SERVICE_NAME, job_pb2_grpc.add_JobServiceServicer_to_server, JobServicer(self.manager))],
            config_key="job.listen",
        )
        self._lease_watch: asyncio.Task[None] | None = None
        self._cleanups: asyncio.Task[None] | None = None
        self._readiness: asyncio.Task[None] | None = None
        self._results_pruning: asyncio.Task[None] | None = None
        self.manager.on_readiness = self._on_readiness

    async def _on_readiness(self, ready: bool, why: str) -> None:
        await self.server.set_ready(SERVICE_NAME, ready)

    async def _check_ready_forever(self) -> None:
        """The readiness check (readiness.py) every CHECK_SECONDS; it beats after each."""
        while True:
            await self.manager.check_ready()
            liveness.beat()
            await asyncio.sleep(CHECK_SECONDS)

    async def _start_bridge(self, job: JobDescriptor, token: str, on_progress: ProgressSink) -> JobBridge:
        bridge = JobBridge(
            job,
            token,
            data_fetcher_address=self.config.listen("data_fetcher"),
            # NOTE: the run of an "aggregate" job lives on this worker's own parameter server.
            paramserver_address=self.config.listen("paramserver"),
            on_progress=on_progress,
            fetch_roots=[Path(root) for root in self.config.job.fetch_roots],
            resources=self.resources,
            handoff=self.manager.workdirs.handoff_of(job.work_dir),
        )
        await bridge.start()
        return bridge

    async def _release_bridge(self, job: JobDescriptor) -> None:
        await release_bridge(job, data_fetcher_address=self.config.listen("data_fetcher"))

    async def start(self) -> None:
        await self.manager.reconcile()
        await self.manager.check_ready()  # the health names start right
        await self.server.start()
        # NOTE: both wait on others (the LeaseService, the disk): watched for death only.
        self._lease_watch = liveness.supervised(
            self.leases.follow(self.manager.on_lease_ended, self.manager.check_leases), name="job-lease-watch"
        )
        self._cleanups = liveness.supervised(self.manager.retry_cleanups_forever(), name="job-cleanup-retry")
        self._results_pruning = liveness.supervised(
            self.manager.prune_results_forever(RESULTS_PRUNE_SECONDS), name="job-results-prune"
        )
        # NOTE: the check's wait on the disk counts as idle (a disk that hangs is not the
        # process's fault and a restart would not help); the rest is milliseconds.
        self._readiness = liveness.supervised(
            self._check_ready_forever(), name="job-readiness", every=CHECK_SECONDS + READINESS_STEP_SECONDS
        )

    async def stop(self) -> None:
        await self.manager.shutdown()
        for task in (self._lease_watch, self._cleanups, self._readiness, self._results_pruning):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.server.stop(grace=1.0)
        await self.leases.close()
        self.store.close()


def build(config: WorkerConfig) -> JobService:
    return JobService(config)
