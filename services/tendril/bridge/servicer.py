"""JobBridgeService: the thin gRPC layer over :class:`BridgeCore` plus the calls to other peers.

Remote peers: the local DataFetcher (slices), the data node of the job's data set
(``tendril-data://`` resources, see ``assets``), the job's parameter server (updates and
parameters, through ``tendril.core.tensorstream``), this worker's own parameter server (the
run of an "aggregate" job: OpenRun, WatchRun, CloseRun) and the job's scheduler (progress).
Their errors keep their status code and name the peer (see ``remotes``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from tendril.bridge.assets import DataNodeAssets
from tendril.bridge.core import BridgeCore
from tendril.bridge.errors import BridgeError
from tendril.bridge.progress import ProgressRelay
from tendril.bridge.remotes import Remotes, calling
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.core.streaming import Digest, digest_from_proto
from tendril.core.validate import Checks
from tendril_proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc
from tendril_proto.common.v1 import common_pb2
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from tendril_sdk.job import RESULTS_DIR
from tendril_sdk.reasons import BridgeReason

SERVICE_NAME = "tendril.bridge.v1.JobBridgeService"
PROGRESS_TIMEOUT_SECONDS = 10.0
OPEN_JOB_TIMEOUT_SECONDS = 10.0
CLOSE_JOB_TIMEOUT_SECONDS = 2.0
RESEND_ATTEMPTS = 3  # times ReceiveUpdate sends a lost update again before it gives PUSH_LOST up

CHECK = Checks(BridgeError)
log = get_logger("tendril.bridge")


def _tensorstream() -> Any:
    # NOTE: imported per call so that the bridge (and every RPC that does not move tensors)
    # works whether or not the tensor-stream module is installed yet.
    from tendril.core import tensorstream

    return tensorstream


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's remaining time, passed on to the peer we call for it."""
    remaining = context.time_remaining()
    return None if remaining is None else max(remaining, 0.001)


class BridgeServicer(bridge_pb2_grpc.JobBridgeServiceServicer):
    """One job's bridge."""

    def __init__(self, core: BridgeCore, remotes: Remotes, data_fetcher_address: str, paramserver_address: str) -> None:
        self.core = core
        self.remotes = remotes
        self.data_fetcher_address = data_fetcher_address
        self.paramserver_address = paramserver_address
        self._data_open = False
        self._data_lock = asyncio.Lock()
        # NOTE: per-batch reports are answered from the held directive and forwarded in the
        # background, so a training step never waits on the scheduler (see progress.py).
        self.progress = ProgressRelay(self._forward_progress)

    @property
    def _worker_id(self) -> str:
        return self.core.job.worker_id

    # -- data fetcher session ----------------------------------------------------------------

    def _data_fetcher(self) -> data_pb2_grpc.DataFetcherServiceStub:
        return data_pb2_grpc.DataFetcherServiceStub(self.remotes.channel(self.data_fetcher_address))

    async def open_data_job(self) -> None:
        """DataFetcher.OpenJob for this job, once (it starts prefetching for the job)."""
        job = self.core.job
        async with self._data_lock:
            if self._data_open:
                return
            request = data_pb2.OpenJobRequest(
                job_id=job.job_id, worker_id=job.worker_id, coordinator_address=job.coordinator_address
            )
            try:
                async with calling(f"DataFetcher at {self.data_fetcher_address}"):
                    await self._data_fetcher().OpenJob(request, timeout=OPEN_JOB_TIMEOUT_SECONDS)
            except BridgeError as exc:
                if exc.kind is not ErrorKind.ALREADY_EXISTS:
                    raise
            self._data_open = True

    async def close_data_job(self) -> None:
        """DataFetcher.CloseJob if the job was opened; a failure is logged, never raised."""
        if not self._data_open:
            return
        self._data_open = False
        try:
            await self._data_fetcher().CloseJob(
                data_pb2.CloseJobRequest(job_id=self.core.job.job_id), timeout=CLOSE_JOB_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("bridge.close_data_job_failed", job_id=self.core.job.job_id, code=exc.code().name)

    # -- RPCs ----------------------------------------------------------------------------

    async def GetJob(self, request: bridge_pb2.GetJobRequest, context: Any) -> bridge_pb2.GetJobResponse:
        job = self.core.job
        config = struct_pb2.Struct()
        config.update(job.config)
        return bridge_pb2.GetJobResponse(
            job_id=job.job_id,
            worker_id=job.worker_id,
            executor=common_pb2.ExecutorRef(executor_class=job.executor.executor_class, name=job.executor.name),
            config=config,
            work_dir=str(job.work_dir),
            results_dir=RESULTS_DIR,
        )

    async def FetchResource(
        self, request: bridge_pb2.FetchResourceRequest, context: Any
    ) -> bridge_pb2.FetchResourceResponse:
        fetched = await self.core.fetch_resource(
            request.uri, request.dest, request.sha256, assets=lambda address: DataNodeAssets(self.remotes, address)
        )
        return bridge_pb2.FetchResourceResponse(
            path=self.core.relative(fetched.path), size_bytes=fetched.size_bytes, sha256=fetched.sha256
        )

    async def NextSlice(self, request: bridge_pb2.NextSliceRequest, context: Any) -> bridge_pb2.NextSliceResponse:
        self.core.coordinator("assign data slices")
        reply = await self._next_slice(context)
        target = await asyncio.to_thread(self.core.place_slice, reply.cache_path, reply.assignment.slice_name)
        return bridge_pb2.NextSliceResponse(
            path=self.core.relative(target), assignment=reply.assignment, wait_seconds=reply.wait_seconds
        )

    async def _next_slice(self, context: Any) -> data_pb2.NextSliceResponse:
        """DataFetcher.NextSlice, opening the job first (again after a DataFetcher restart)."""
        for attempt in range(2):
            await self.open_data_job()
            try:
                async with calling(f"DataFetcher at {self.data_fetcher_address}"):
                    return await self._data_fetcher().NextSlice(
                        data_pb2.NextSliceRequest(job_id=self.core.job.job_id), timeout=_deadline(context)
                    )
            except BridgeError as exc:
                # NOTE: a restarted DataFetcher has forgotten the jobs it served (they live in its
                # memory): open this one again, once, instead of failing every later call.
                if attempt or exc.reason != BridgeReason.JOB_NOT_OPEN:
                    raise
                self._data_open = False
        raise AssertionError("unreachable")

    async def SendUpdate(self, request: bridge_pb2.SendUpdateRequest, context: Any) -> bridge_pb2.SendUpdateResponse:
        path = self.core.existing_file(request.path)
        CHECK.number(
            request.weight, "weight", BridgeReason.BAD_WEIGHT, positive=True, meaning="the samples processed this round"
        )
        fragment = _fragment(request)
        digest = _digest(request)
        run_id = self.core.run_id(fragment)
        start = time.perf_counter()
        try:
            sent = await self._push_update(path, request.round, request.weight, run_id, digest, fragment, reuse=True)
        except BridgeError as exc:
            # NOTE: a push that committed while the bridge that sent it died with its JobService
            # comes back from the executor's retry as ALREADY_COMMITTED: keep its copy all the same.
            if exc.reason == BridgeReason.ALREADY_COMMITTED:
                await asyncio.to_thread(self.core.keep_sent, request.round, path, request.weight, fragment)
            raise
        # NOTE: the parameter server holds a round's pushes in memory until the round closes; a
        # copy stays here until the round's update arrives, to be sent again if a restart of the
        # server lost it (ReceiveUpdate, PUSH_LOST).
        await asyncio.to_thread(self.core.keep_sent, request.round, path, request.weight, fragment)
        return bridge_pb2.SendUpdateResponse(bytes_sent=int(sent), seconds=time.perf_counter() - start)

    async def _push_update(
        self,
        path: Path,
        round_: int,
        weight: float,
        run_id: str,
        digest: Digest | None = None,
        fragment: int | None = None,
        *,
        reuse: bool = False,
    ) -> int:
        """Push ``path``; ``reuse``: encode it (another codec than fp32) into a kept file beside it
        (a round's Δ; not a copy sent again after a restart of the server, once)."""
        address, codec = self.core.parameter_server(), self.core.codec()
        scratch = self.core.payload_scratch(fragment, path, codec) if reuse else None
        try:
            async with calling(f"parameter server at {address}"):
                sent = await _tensorstream().push_update(
                    self.remotes.channel(address),
                    path,
                    run_id=run_id,
                    round=round_,
                    worker_id=self._worker_id,
                    weight=weight,
                    codec=codec,
                    block_size=self.core.codec_block_size(),
                    digest=digest,
                    encoded=None if scratch is None else (scratch[0], scratch[1].mapping),
                )
            if scratch is not None:  # (see Reusable.fill_from)
                await asyncio.to_thread(scratch[1].fill_from, scratch[0])
        finally:
            if scratch is not None:
                scratch[1].release(scratch[0])
        return int(sent)

    async def ReceiveUpdate(
        self, request: bridge_pb2.ReceiveUpdateRequest, context: Any
    ) -> bridge_pb2.ReceiveUpdateResponse:
        dest = self.core.update_dest(request.round, request.path)
        timeout = self.core.round_timeout(request.timeout_seconds if request.HasField("timeout_seconds") else None)
        fragment = _fragment(request)
        address, run_id, codec = self.core.parameter_server(), self.core.run_id(fragment), self.core.codec()
        # reuse_files: the fp32 update goes into a kept file (linked at dest); with another codec
        # the payload is received into a kept file of its own first, then decoded into that one
        scratch = self.core.update_scratch(fragment, dest) if request.reuse_files else None
        incoming = scratch if codec == "fp32" or scratch is None else self.core.received_scratch(fragment, dest, codec)
        decoded = None if scratch is None or incoming is scratch else (scratch[0], scratch[1].mapping)
        held = [k for k in (scratch, None if incoming is scratch else incoming) if k is not None]
        start = time.perf_counter()
        try:
            for attempt in range(RESEND_ATTEMPTS + 1):
                try:
                    # tensorstream writes ``dest`` atomically: a failed pull leaves no file behind
                    # (at most a kept file that the next reusing call writes over).
                    async with calling(f"parameter server at {address}"):
                        received, contributors = await _tensorstream().pull_update(
                            self.remotes.channel(address),
                            run_id=run_id,
                            round=request.round,
                            dest=dest,
                            codec=codec,
                            timeout=timeout,
                            worker_id=self._worker_id,
                            scratch=None if incoming is None else incoming[0],
                            mapped=None if incoming is None else incoming[1].mapping,
                            decoded=decoded,
                        )
                    for path, files in held:  # (see Reusable.fill_from)
                        await asyncio.to_thread(files.fill_from, path)
                    break
                except BridgeError as exc:
                    sent = self.core.sent(request.round, fragment)
                    if exc.reason != BridgeReason.PUSH_LOST or sent is None or attempt == RESEND_ATTEMPTS:
                        raise
                    # The parameter server restarted and lost this worker's update: send it again.
                    log.warning("bridge.update_resent", job_id=self.core.job.job_id, round=request.round)
                    try:
                        await self._push_update(sent.path, request.round, sent.weight, run_id)
                    except BridgeError as again:
                        if again.reason != BridgeReason.ALREADY_COMMITTED:
                            raise
        finally:
            for path, files in held:
                files.release(path)
        await asyncio.to_thread(self.core.forget_sent, request.round, fragment)
        return bridge_pb2.ReceiveUpdateResponse(
            path=self.core.relative(dest),
            bytes_received=int(received),
            seconds=time.perf_counter() - start,
            contributors=int(contributors),
        )

    async def ReportProgress(
        self, request: bridge_pb2.ReportProgressRequest, context: Any
    ) -> bridge_pb2.ReportProgressResponse:
        self.core.coordinator("report progress to")
        progress = request.progress
        progress.job_id = self.core.job.job_id
        progress.worker_id = self._worker_id
        self.core.report_progress({"round": float(progress.round), **dict(progress.metrics)})
        return bridge_pb2.ReportProgressResponse(directive=await self.progress.report(progress))

    async def _forward_progress(
        self, progress: scheduler_pb2.ReportProgressRequest
    ) -> scheduler_pb2.ReportProgressResponse:
        address = self.core.coordinator("report progress to")
        stub = scheduler_pb2_grpc.CoordinationServiceStub(self.remotes.channel(address))
        async with calling(f"scheduler at {address}"):
            return await stub.ReportProgress(progress, timeout=PROGRESS_TIMEOUT_SECONDS)

    async def PublishParameters(
        self, request: bridge_pb2.PublishParametersRequest, context: Any
    ) -> bridge_pb2.PublishParametersResponse:
        path = self.core.existing_file(request.path)
        address, run_id = self.core.parameter_server(), self.core.run_id(_fragment(request))
        async with calling(f"parameter server at {address}"):
            accepted, round_ = await _tensorstream().push_parameters(
                self.remotes.channel(address), path, run_id=run_id, worker_id=self._worker_id
            )
        return bridge_pb2.PublishParametersResponse(accepted=bool(accepted), round=int(round_))

    async def FetchParameters(
        self, request: bridge_pb2.FetchParametersRequest, context: Any
    ) -> bridge_pb2.FetchParametersResponse:
        dest = self.core.params_dest(request.path)
        address, run_id = self.core.parameter_server(), self.core.run_id(_fragment(request))
        async with calling(f"parameter server at {address}"):
            round_ = await _tensorstream().pull_parameters(self.remotes.channel(address), run_id=run_id, dest=dest)
        return bridge_pb2.FetchParametersResponse(path=self.core.relative(dest), round=int(round_))

    # -- the run of an "aggregate" job, on this worker's own parameter server ------------------

    def _own_paramserver(self) -> tuple[paramserver_pb2_grpc.ParameterServerServiceStub, str]:
        address = self.paramserver_address
        return paramserver_pb2_grpc.ParameterServerServiceStub(self.remotes.channel(address)), address

    async def OpenRun(self, request: bridge_pb2.OpenRunRequest, context: Any) -> bridge_pb2.OpenRunResponse:
        run_id = self.core.own_run(request.run_id)
        stub, address = self._own_paramserver()
        open_job = paramserver_pb2.OpenJobRequest(
            run_id=run_id,
            expected_workers=request.expected_workers,
            quorum=request.quorum,
            round_timeout_seconds=request.round_timeout_seconds,
            # NOTE: passed on set or unset: unset means the server's default, 0 means 0.
            outer_lr=request.outer_lr if request.HasField("outer_lr") else None,
            outer_momentum=request.outer_momentum if request.HasField("outer_momentum") else None,
            codec=request.codec,
            rounds=request.rounds,
            # NOTE: filled in here, never by the executor: the scheduler that dispatched the job
            # is the one peer the parameter server lets name the run's expected workers.
            owner_id=self.core.run_owner(),
        )
        async with calling(f"this worker's parameter server at {address}"):
            reply = await stub.OpenJob(open_job, timeout=_deadline(context))
        log.info("bridge.run_opened", job_id=self.core.job.job_id, run_id=run_id, round=reply.round)
        return bridge_pb2.OpenRunResponse(run_id=run_id, round=reply.round, resumed=reply.resumed)

    async def WatchRun(
        self, request: bridge_pb2.WatchRunRequest, context: Any
    ) -> AsyncIterator[bridge_pb2.WatchRunResponse]:
        run_id, remote = self.core.watched_run(request.run_id)
        stub, address = self._own_paramserver()
        if remote is not None:  # an eval job follows the run at the run's parameter server
            stub, address = paramserver_pb2_grpc.ParameterServerServiceStub(self.remotes.channel(remote)), remote
        # NOTE: a plain relay, one message in, one out: gRPC flow control carries a slow
        # executor's back-pressure to the parameter server, whose watch queue cuts it off.
        call = stub.WatchRound(paramserver_pb2.WatchRoundRequest(run_id=run_id), timeout=_deadline(context))
        try:
            async with calling(f"this worker's parameter server at {address}"):
                async for reply in call:
                    yield bridge_pb2.WatchRunResponse(status=reply.status)
        finally:
            call.cancel()

    async def CloseRun(self, request: bridge_pb2.CloseRunRequest, context: Any) -> bridge_pb2.CloseRunResponse:
        run_id = self.core.own_run(request.run_id)
        stub, address = self._own_paramserver()
        async with calling(f"this worker's parameter server at {address}"):
            await stub.CloseJob(paramserver_pb2.CloseJobRequest(run_id=run_id), timeout=_deadline(context))
        log.info("bridge.run_closed", job_id=self.core.job.job_id, run_id=run_id)
        return bridge_pb2.CloseRunResponse()


def _digest(request: bridge_pb2.SendUpdateRequest) -> Digest | None:
    """The digest the executor gave for its file, None when it gave none."""
    if not request.HasField("digest"):
        return None
    try:
        return digest_from_proto(request.digest)
    except ValueError as exc:
        raise BridgeError(ErrorKind.INVALID_ARGUMENT, str(exc), reason=BridgeReason.BAD_DIGEST) from exc


def _fragment(
    request: bridge_pb2.SendUpdateRequest
    | bridge_pb2.ReceiveUpdateRequest
    | bridge_pb2.PublishParametersRequest
    | bridge_pb2.FetchParametersRequest,
) -> int | None:
    """The fragment of θ a call names (streaming sync), None when it names the run itself."""
    return request.fragment if request.HasField("fragment") else None
