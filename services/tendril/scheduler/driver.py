"""The scheduler's active side: find the data set, advertise, keep leases, dispatch, finish.

Life of a run:
1. Read the data set manifest from the data node (or find the node in the gateway registry).
2. Publish a ResourceRequest for the training workers on the bus (again every
   ``republish_seconds`` while some are missing), then one for the parameter server — after
   the trainers, so that a worker with room for both (strategy ``flexible``) can host it.
   Offers are answered by the servicer; each accepted one starts a member task here.
3. Member task: renew the lease once (the owner's first renewal confirms it), then at 2/3 of
   its remaining time; dispatch its job (the aggregate job first; training jobs once the
   parameter server answers), and watch the job. A lease that cannot be renewed or a job that ends early
   loses the member: the run drops it and a new request solicits a replacement.
4. Once the first full set of training jobs is dispatched, the parameter server is told which
   workers the run expects (``SetExpectedWorkers``), and again whenever a training member is
   lost (it is left out: later rounds do not wait for it) or a new one is dispatched (it is
   added). Until then the run expects ``allocation.workers`` workers by count.
5. When every round is done: pull the final θ from the parameter server into
   ``model.safetensors``, let the jobs end, release every lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from tendril.core.calls import ChannelPool
from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.gateways import Gateways
from tendril.core.logs import get_logger
from tendril.core.registry_client import list_records
from tendril.core.tensorstream import TensorStreamError
from tendril.scheduler.allocation import Wanted, publish_request, resource_request
from tendril.scheduler.dispatch import (
    AGGREGATE,
    TRAIN,
    JobEnd,
    JobHandle,
    aggregate_config,
    fragments,
    model_source,
    train_config,
)
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason
from tendril.scheduler.evaluation import EVAL, dataset_assets, eval_config, export_due, held_out_slices
from tendril.scheduler.export import Exporter
from tendril.scheduler.fragments import pull_theta, run_ids
from tendril.scheduler.jobconfig import JobConfig, ResourcesSpec
from tendril.scheduler.leasekeeper import LeaseKeeper, LeaseLost
from tendril.scheduler.resume import wait_reopened
from tendril.scheduler.run import Dataset, Member, Role, Run
from tendril.scheduler.slices import SliceRef
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_sdk.retry import TRANSIENT_CODES, RetryPolicy, retry

log = get_logger("tendril.scheduler.driver")

CALL_TIMEOUT_SECONDS = 15.0
PS_READY_TIMEOUT_SECONDS = 120.0  # the aggregate executor starts a Python process before it opens the run
POLL_SECONDS = 0.2
PS_POLL_MAX_SECONDS = 1.0
EXPECTED_RETRY_SECONDS = 5.0  # pause before telling the parameter server the expected workers again after a failure
# NOTE: SetExpectedWorkers is retried while the parameter server restarts (no answer) or has not
# reopened the run yet (NOT_FOUND); a refusal means an older or foreign server: rounds then go
# on expecting allocation.workers workers by count (and wait out the round timeout for a lost one).
EXPECTED_POLICY = RetryPolicy(
    codes=TRANSIENT_CODES | {grpc.StatusCode.NOT_FOUND},
    attempts=None,
    deadline=30.0,
    initial_backoff=POLL_SECONDS,
    max_backoff=2.0,
)


class Driver:
    """Drives one run; ``advertised`` is the address workers reach this scheduler's services at."""

    def __init__(self, config: JobConfig, run: Run, *, advertised: str, out_dir: Path) -> None:
        self.config = config
        self.run = run
        self.advertised = advertised
        self.out_dir = out_dir
        self.peer_id = config.scheduler.id
        # NOTE: no bound: a run keeps a channel to each of its workers' services for its life.
        self._channels = ChannelPool(self.peer_id, max_channels=None)
        # NOTE: every gateway call goes through here: a dead gateway moves the run to the next one.
        self.gateways = Gateways(self.config.scheduler.gateway, peer_id=self.peer_id)
        self._members: dict[str, asyncio.Task[None]] = {}
        self._keepers: dict[str, LeaseKeeper] = {}
        self._jobs: dict[str, JobHandle] = {}
        self._ended: dict[str, str] = {}  # job id -> end state, for jobs that ended
        self._ps_ready = asyncio.Event()
        self._job_end = asyncio.Event()  # set whenever a job ends
        self._started_at = time.monotonic()
        self._dispatched_trainers = 0
        self._full = False  # the first full set of trainers was dispatched
        self._trainers_changed = asyncio.Event()  # a training job was dispatched or lost
        self._export: Exporter | None = None
        self._exports: set[asyncio.Task[bool]] = set()  # exports every evaluation.export_every_rounds
        self.exported = False  # <out_dir>/model/ was written at the end

    def channel(self, address: str) -> grpc.aio.Channel:
        return self._channels.channel(address)

    # -- data ------------------------------------------------------------------------------

    async def load_dataset(self) -> Dataset:
        """The manifest from the data node named in job.toml, or found in the gateway registry."""
        node = self.config.data.node or await self._find_data_node()
        stub = data_pb2_grpc.DataNodeServiceStub(self.channel(node))
        try:
            reply = await stub.GetManifest(
                data_pb2.GetManifestRequest(dataset_id=self.config.data.dataset_id), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            raise SchedulerError(
                ErrorKind.UNAVAILABLE,
                f"cannot read the data set manifest from the data node at {node}: {exc.code().name} {exc.details()} "
                "(start it with `tendril data serve`, or fix data.node in job.toml)",
                reason=SchedulerRunReason.NO_MANIFEST,
            ) from exc
        m = reply.manifest
        slices = tuple(SliceRef(s.name, s.size_bytes, s.sha256, s.num_sequences) for s in m.slices)
        data = _data_summary(m.manifest_json, node)
        held_out = held_out_slices(m)
        dataset = Dataset(
            m.dataset_id,
            node,
            slices,
            m.seq_len,
            m.vocab_size,
            eval_slices=held_out,
            assets=dataset_assets(m),
            tokenizer=m.tokenizer,
            data=data,
        )
        model_source(self.config.training.model.spec().to_dict(), dataset)  # a bad source fails the run here
        log.info(
            "dataset.ready",
            dataset_id=m.dataset_id,
            slices=len(slices),
            eval_slices=len(held_out),
            seq_len=m.seq_len,
            node=node,
        )
        return dataset

    async def _find_data_node(self) -> str:
        records = await list_records(self.gateways, "dataset", timeout=CALL_TIMEOUT_SECONDS)
        wanted = self.config.data.dataset_id
        found = []
        for record in records:
            info = data_pb2.DatasetRecord()
            if record.payload.Unpack(info) and (not wanted or info.dataset_id == wanted):
                found.append(info.address)
        if len(found) != 1:
            raise SchedulerError(
                ErrorKind.FAILED_PRECONDITION,
                f"the gateway registry lists {len(found)} data nodes for data set {wanted or '(any)'}; "
                "set data.node (or data.dataset_id) in job.toml",
                reason=SchedulerRunReason.NO_DATA_NODE,
            )
        return found[0]

    # -- allocation ------------------------------------------------------------------------

    async def _publish(self, role: Role) -> None:
        allocation = self.config.allocation
        spec: ResourcesSpec = {Role.TRAIN: allocation.worker, Role.EVAL: allocation.eval}.get(
            role, allocation.parameter_server
        )
        executor = {Role.TRAIN: TRAIN, Role.EVAL: EVAL}.get(role, AGGREGATE)
        request_id = f"{self.run.run_id}-{role.value}-{uuid.uuid4().hex[:8]}"
        self.run.register_request(request_id, role)
        request = resource_request(
            request_id,
            peer_id=self.peer_id,
            address=self.advertised,
            wanted=Wanted(spec.cpu, spec.memory_gib, spec.storage_gib, spec.gpu),
            executor=executor,
            bid=self.config.allocation.bid,
            deadline_seconds=self.config.allocation.request_deadline_seconds,
        )
        await publish_request(self.gateways, self.config.allocation.topic, self.peer_id, request)

    async def _allocate(self) -> None:
        """Publish requests while leases are missing (trainers first, then the parameter server)."""
        every = self.config.allocation.republish_seconds
        last: dict[Role, float] = {}
        while True:
            for role in (Role.TRAIN, Role.PARAMETER_SERVER, Role.EVAL):
                if role is Role.PARAMETER_SERVER and self.run.parameter_server is None and self.run.needs(Role.TRAIN):
                    continue
                if role is Role.EVAL and not self._ps_ready.is_set():
                    continue  # NOTE: after the parameter server, so that a worker with room may host both
                if self.run.needs(role) and time.monotonic() - last.get(role, -every) >= every:
                    last[role] = time.monotonic()
                    await self._publish(role)
            await asyncio.sleep(POLL_SECONDS)

    def on_accept(self, member: Member) -> None:
        """Called by the servicer for every accepted offer."""
        self._members[member.lease_id] = asyncio.get_running_loop().create_task(self._member(member))

    # -- members ---------------------------------------------------------------------------

    async def _member(self, member: Member) -> None:
        keeper = LeaseKeeper(
            self.channel(member.endpoints.lease), member.lease_id, member.worker_id, expires_at=member.offer_expires_at
        )
        self._keepers[member.lease_id] = keeper
        renewing: asyncio.Task[None] | None = None
        working: asyncio.Task[None] | None = None
        try:
            await keeper.confirmed()
            renewing = asyncio.create_task(keeper.keep())
            working = asyncio.create_task(self._work(member))
            done, _ = await asyncio.wait({renewing, working}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
            # The job ended as it should: hold the lease until the run releases it.
            await renewing
        except (LeaseLost, TendrilError, grpc.aio.AioRpcError) as exc:
            await self._lose(member, _why(exc))
        except Exception as exc:  # a bug must cost one member, not leave it unattended
            log.exception("member.failed", worker=member.worker_id, job_id=member.job_id)
            await self._lose(member, f"scheduler error: {exc!r}")
        finally:
            for pending in (renewing, working):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pending

    async def _work(self, member: Member) -> None:
        """Dispatch the member's job and follow it; returns when it ended as it should."""
        job = JobHandle(self.channel(member.endpoints.job), member.job_id, member.worker_id)
        if member.role is Role.PARAMETER_SERVER:
            await job.dispatch(member.lease_id, AGGREGATE, aggregate_config(self.config, self.run.run_id))
            self._jobs[member.job_id] = job
            ending = asyncio.create_task(job.wait_end())
            ready = asyncio.create_task(self._wait_parameter_server(member))
            try:
                # An aggregate job that dies before it opened the run must not leave us waiting.
                await asyncio.wait({ending, ready}, return_when=asyncio.FIRST_COMPLETED)
                if not ready.done():
                    self._check_end(member, ending.result())
                ready.result()
            except BaseException:
                ending.cancel()
                raise
            finally:
                ready.cancel()
            self._check_end(member, await ending)
            return
        await self._ps_ready.wait()
        ps = self.run.parameter_server
        assert ps is not None and self.run.dataset is not None
        config = train_config(self.config, self.run.run_id, ps.endpoints.parameter_server, self.run.dataset)
        if member.role is Role.EVAL:
            await self._work_eval(member, job, config)
            return
        self.run.add_trainer(member)
        await job.dispatch(member.lease_id, TRAIN, config, coordinator_address=self.advertised)
        self._jobs[member.job_id] = job
        self._dispatched_trainers += 1
        self._full = self._full or self._dispatched_trainers >= self.config.allocation.workers
        self._trainers_changed.set()
        end = await job.wait_end()
        if end.state == "FAILED":
            last = await job.tail(1)
            end = JobEnd(end.state, end.exit_code, f"{end.reason}; its log ends: {last}" if last else end.reason)
        self._check_end(member, end)

    async def _work_eval(self, member: Member, job: JobHandle, train: dict[str, object]) -> None:
        """Dispatch the held-out evaluation job (it follows the trainers' run) and follow it."""
        evaluation = self.run.evaluation
        assert self.run.dataset is not None
        evaluation.start(member.job_id)
        config = eval_config(self.config, train, self.run.dataset)
        await job.dispatch(member.lease_id, EVAL, config, coordinator_address=self.advertised)
        self._jobs[member.job_id] = job
        end = await job.wait_end()
        evaluation.job_ended(member.job_id)
        if end.state == "SUCCEEDED" and evaluation.finished:
            self._ended[member.job_id] = end.state
            self._job_end.set()
            log.info("job.ended", job_id=member.job_id, worker=member.worker_id, state=end.state, reason=end.reason)
            return
        if end.state == "FAILED":
            last = await job.tail(1)
            end = JobEnd(end.state, end.exit_code, f"{end.reason}; its log ends: {last}" if last else end.reason)
        self._check_end(member, end)

    def _check_end(self, member: Member, end: JobEnd) -> None:
        """Record a job's end; raise unless it ended as it should."""
        self._ended[member.job_id] = end.state
        self._job_end.set()
        log.info("job.ended", job_id=member.job_id, worker=member.worker_id, state=end.state, reason=end.reason)
        # NOTE: the aggregate job ends once the last round closed, possibly before the trainers reported it.
        closed = self.run.finished or (member.role is Role.PARAMETER_SERVER and self._ps_ready.is_set())
        if end.state != "SUCCEEDED" or not closed:
            raise SchedulerError(
                ErrorKind.ABORTED,
                f"job {member.job_id} on {member.worker_id} ended {end.state} "
                f"(exit code {end.exit_code}): {end.reason}",
                reason=SchedulerRunReason.JOB_ENDED,
            )

    async def _wait_parameter_server(self, member: Member) -> None:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(self.channel(member.endpoints.parameter_server))
        # Until the aggregate job opened the run: RUN_NOT_OPEN, or no answer while its PS starts.
        policy = RetryPolicy(
            codes=TRANSIENT_CODES | {grpc.StatusCode.NOT_FOUND},
            attempts=None,
            deadline=PS_READY_TIMEOUT_SECONDS,
            initial_backoff=POLL_SECONDS,
            max_backoff=PS_POLL_MAX_SECONDS,
        )
        try:
            for run_id in self._ps_runs():  # with streaming sync: every fragment's run
                await retry(
                    lambda run_id=run_id: stub.GetRound(  # type: ignore[misc]
                        paramserver_pb2.GetRoundRequest(run_id=run_id), timeout=CALL_TIMEOUT_SECONDS
                    ),
                    policy,
                )
        except grpc.aio.AioRpcError as exc:
            if not policy.retryable(exc):
                raise
            raise SchedulerError(
                ErrorKind.DEADLINE_EXCEEDED,
                f"the parameter server on {member.worker_id} did not open run {self.run.run_id} within "
                f"{PS_READY_TIMEOUT_SECONDS:.0f} s ({exc.details()}); see its aggregate job's log",
                reason=SchedulerRunReason.PS_NOT_READY,
            ) from exc
        if self.run.ps_worker:  # a resumed run: wait until the new aggregate job reopened it
            for run_id in self._ps_runs():
                await wait_reopened(stub, run_id, PS_READY_TIMEOUT_SECONDS)
        log.info("parameter_server.ready", worker=member.worker_id, address=member.endpoints.parameter_server)
        self._ps_ready.set()

    async def _lose(self, member: Member, reason: str) -> None:
        if self.run.lose(member.lease_id, reason) is None:
            return
        log.warning("member.lost", worker=member.worker_id, role=member.role.value, job_id=member.job_id, reason=reason)
        if member.role is Role.TRAIN:
            self._trainers_changed.set()
        job = self._jobs.get(member.job_id)
        if job is not None and member.job_id not in self._ended:
            # Nobody waits for a dropped job at the end: its worker may be gone for good.
            self._ended[member.job_id] = "DROPPED"
            self._job_end.set()
            await job.cancel(f"scheduler dropped it: {reason}")
        keeper = self._keepers.get(member.lease_id)
        if keeper is not None:
            await keeper.release()

    async def _tell_expected(self) -> None:
        """Keep the parameter server's expected workers equal to the run's live training workers.

        NOTE: the scheduler tells the parameter server itself (as it already asks it GetRound and
        pulls the final θ there): it is the one that learns a worker is lost, and the server
        accepts the names only from the run's owner, which the aggregate job's bridge named at
        OpenJob. Nothing is told before the first full set of trainers is dispatched, so that
        round 0 cannot close before every first worker could push.
        """
        told: list[str] | None = None
        while True:
            await self._trainers_changed.wait()
            self._trainers_changed.clear()
            ps = self.run.parameter_server
            want = self.run.expected_workers()
            if not self._full or ps is None or not self._ps_ready.is_set() or want == told:
                continue
            try:
                await self._set_expected(ps.endpoints.parameter_server, want)
            except grpc.aio.AioRpcError as exc:
                retryable = EXPECTED_POLICY.retryable(exc)
                log.warning(
                    "expected_workers.not_told",
                    workers=want,
                    code=exc.code().name,
                    error=exc.details(),
                    action="retrying" if retryable else "rounds expect allocation.workers workers by count",
                )
                if not retryable:
                    return
                await asyncio.sleep(EXPECTED_RETRY_SECONDS)
                self._trainers_changed.set()
                continue
            told = want
            log.info("expected_workers.told", workers=want, parameter_server=ps.worker_id)

    async def _set_expected(self, address: str, workers: list[str]) -> None:
        stub = paramserver_pb2_grpc.ParameterServerServiceStub(self.channel(address))
        for run_id in self._ps_runs():
            request = paramserver_pb2.SetExpectedWorkersRequest(run_id=run_id, worker_ids=workers)
            await retry(
                lambda request=request: stub.SetExpectedWorkers(  # type: ignore[misc]
                    request, timeout=CALL_TIMEOUT_SECONDS
                ),
                EXPECTED_POLICY,
            )

    def _ps_runs(self) -> list[str]:
        """The run's runs at the parameter server: itself, or one per fragment (streaming sync)."""
        return run_ids(self.run.run_id, fragments(self.config))

    # -- the run ---------------------------------------------------------------------------

    async def execute(self) -> None:
        """Run the job to its end; raises SchedulerError when it cannot finish."""
        self.run.set_dataset(await self.load_dataset())
        background = [asyncio.create_task(self._allocate()), asyncio.create_task(self._tell_expected())]
        try:
            await self._until_trained()
            await self._until_evaluated()
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._finish()

    async def _until_trained(self) -> None:
        timeout = self.config.allocation.timeout_seconds
        while not self.run.finished:
            if self.run.failed:
                raise SchedulerError(ErrorKind.ABORTED, self.run.failed, reason=SchedulerRunReason.RUN_FAILED)
            if not self._full and time.monotonic() - self._started_at > timeout:
                raise SchedulerError(
                    ErrorKind.DEADLINE_EXCEEDED,
                    f"after {timeout:.0f} s {self._missing()}",
                    reason=SchedulerRunReason.ALLOCATION_TIMEOUT,
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _until_evaluated(self) -> None:
        """Wait (up to evaluation.timeout_seconds) for the last round's held-out evaluation."""
        evaluation = self.run.evaluation
        deadline = time.monotonic() + self.config.evaluation.timeout_seconds
        while True:
            if not evaluation.waiting() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
        missing = evaluation.missing_reason(self.config.evaluation.timeout_seconds)
        if missing:
            evaluation.turn_off(missing)
        if evaluation.off_reason:
            log.warning("run.without_evaluation", run_id=self.run.run_id, reason=evaluation.off_reason)

    def on_round(self, line: dict[str, object]) -> None:
        """A round closed: export every evaluation.export_every_rounds rounds (not the last: the end does)."""
        index = int(line["round"])  # type: ignore[call-overload]
        every = self.config.evaluation.export_every_rounds
        if not self.config.evaluation.export or not export_due(index, every, self.run.rounds):
            return
        exporter, ps = self._exporter(), self.run.parameter_server
        if exporter is None or ps is None:
            return
        if self._exports:  # NOTE: the one still running exports the newest θ there is when it pulls
            log.info("model.export_skipped", after_round=index, reason="the previous export is still running")
            return
        address = ps.endpoints.parameter_server
        task = asyncio.get_running_loop().create_task(
            exporter.try_export(lambda: exporter.export_now(address), when=f"after round {index}")
        )
        self._exports.add(task)
        task.add_done_callback(self._exports.discard)

    async def export_final(self, theta: Path, round_index: int, parameter_server: str) -> None:
        """A resumed run found every round closed: export the θ pulled from its parameter server."""
        if not self.config.evaluation.export:
            return
        dataset = self.run.dataset or await self.load_dataset()
        train = train_config(self.config, self.run.run_id, parameter_server, dataset)
        exporter = Exporter(self.out_dir, dataset, train, channel=self.channel, run_id=self.run.run_id)
        self.exported = await exporter.try_export(lambda: exporter.export_theta(theta, round_index), when="final")

    def _exporter(self) -> Exporter | None:
        ps, dataset = self.run.parameter_server, self.run.dataset
        if self._export is None and ps is not None and dataset is not None:
            train = train_config(self.config, self.run.run_id, ps.endpoints.parameter_server, dataset)
            self._export = Exporter(self.out_dir, dataset, train, channel=self.channel, run_id=self.run.run_id)
        return self._export

    def _missing(self) -> str:
        """What keeps the run from starting, in words."""
        trainers, want = len(self.run.live(Role.TRAIN)), self.config.allocation.workers
        if trainers < want or self.run.parameter_server is None:
            return (
                f"the run has {trainers} of {want} training workers and "
                f"{'a' if self.run.parameter_server else 'no'} parameter server. Check that workers joined gateway "
                f"{self.config.scheduler.gateway}, run executors train/diloco and aggregate/diloco, ask at most "
                "allocation.bid, and have the resources asked (one worker needs room for a second lease, e.g. "
                "arbiter.strategy = 'flexible', to host the parameter server)"
            )
        if not self._ps_ready.is_set():
            ps = self.run.parameter_server
            return (
                f"the parameter server on {ps.worker_id} has not opened run {self.run.run_id} "
                f"at {ps.endpoints.parameter_server}; see the log of its job {ps.job_id}"
            )
        return f"only {self._dispatched_trainers} of {want} training jobs were dispatched; see the scheduler log"

    async def _finish(self) -> None:
        ps = self.run.parameter_server
        assert ps is not None
        dest = self.out_dir / "model.safetensors"
        try:
            round_index = await pull_theta(
                self.channel(ps.endpoints.parameter_server),
                run_id=self.run.run_id,
                fragments=fragments(self.config),
                dest=dest,
            )
        except TensorStreamError as exc:
            raise SchedulerError(
                ErrorKind.UNAVAILABLE,
                f"training finished but the final parameters could not be pulled from the parameter server on "
                f"{ps.worker_id}: {exc.message}",
                reason=SchedulerRunReason.NO_FINAL_MODEL,
            ) from exc
        log.info("model.saved", path=str(dest), round=round_index)
        exporter = self._exporter()
        if self.config.evaluation.export and exporter is not None:
            for pending in list(self._exports):
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
            self.exported = await exporter.try_export(lambda: exporter.export_theta(dest, round_index), when="final")
        deadline = time.monotonic() + self.config.scheduler.finish_timeout_seconds
        while True:
            self._job_end.clear()  # before the check, so that an end right after it still wakes us
            if all(job_id in self._ended for job_id in self._jobs) or time.monotonic() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._job_end.wait(), deadline - time.monotonic())
        left = sorted(job_id for job_id in self._jobs if job_id not in self._ended)
        if left:
            log.warning("jobs.still_running", jobs=left, action="releasing their leases stops them")

    async def close(self) -> None:
        """Stop member tasks, release every lease, close channels."""
        for pending in list(self._exports):
            pending.cancel()
        for task in self._members.values():
            task.cancel()
        for task in self._members.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(k.release() for k in self._keepers.values()))
        await self._channels.close()
        await self.gateways.close()


def _data_summary(manifest_json: str, node: str) -> dict[str, Any]:
    """The DataSpec of the manifest a data node served (empty from a node that sends no
    manifest_json: the jobs then read the data set as format 1, a causal-lm set of input_ids)."""
    if not manifest_json:
        return {}
    from tendril_models.errors import ModelError  # NOTE: torch-free, like .spec
    from tendril_models.spec import DataSpec

    try:
        return DataSpec.from_manifest(json.loads(manifest_json)).to_dict()
    except (ValueError, ModelError) as exc:
        raise SchedulerError(
            ErrorKind.FAILED_PRECONDITION,
            f"the data set manifest served by the data node at {node} is not usable: {exc}; prepare the data set "
            "again with `tendril data prepare`",
            reason=SchedulerRunReason.NO_MANIFEST,
        ) from exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, TendrilError):
        return exc.message
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
