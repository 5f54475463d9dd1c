"""Starting a run, or resuming it from the scheduler's state file (see :mod:`.state`).

``tendril scheduler run`` on an out dir that holds a run's state, or ``tendril scheduler
resume OUT_DIR``, continues that run:

1. The job config must be the one the run began with (keys that only say how the scheduler
   process runs may differ, :data:`~.state.OPERATIONAL_KEYS`); a run that finished is
   reported, not started again.
2. The jobs the dead scheduler left are cancelled, awaited and their leases released — none
   is re-used: the scheduler's picture of a training job (its round, its sync plan) died with
   it, a lease lives only ``lease.renewable_seconds`` without renewal, and an old aggregate
   job that closes its run must have done so before a new one opens it again.
3. The parameter server that held the run says how many rounds closed (``GetRound``). Rounds
   that closed while the scheduler was down get a metrics line marked ``"recovered": true``
   (no worker reports reached anyone); rounds the state file has beyond the server's are
   forgotten (they are trained again), and so are the slices handed out in them.
4. The run goes on from that round: the parameter server only on the worker that holds the
   run's state (its new aggregate job's OpenRun resumes the saved run), fresh training jobs
   that start from the round's θ (a joining trainer fetches the run's current θ), the slice
   assigner in the epoch it was in with the slices used so far, each worker in its data slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import grpc

from tendril.core.errors import ConfigError, ErrorKind
from tendril.core.logs import get_logger
from tendril.core.tensorstream import TensorStreamError
from tendril.scheduler.dispatch import JobHandle, fragments
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason
from tendril.scheduler.fragments import pull_theta, run_ids
from tendril.scheduler.jobconfig import JobConfig
from tendril.scheduler.leasekeeper import LeaseKeeper
from tendril.scheduler.metrics import round_line
from tendril.scheduler.run import Member, Role, Run
from tendril.scheduler.slices import Assignment
from tendril.scheduler.state import (
    STATE_FILE,
    RunStateStore,
    SavedAssignment,
    SavedMember,
    StateError,
    config_differences,
)
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_sdk.retry import TRANSIENT_CODES, RetryPolicy, retry

log = get_logger("tendril.scheduler.resume")

CALL_TIMEOUT_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 20.0  # wait this long for an old job to end after its Cancel
PS_ANSWER_SECONDS = 30.0  # ask the parameter server this long while it does not answer
SETTLE_SECONDS = 30.0  # wait this long for a round being aggregated to close
SETTLE_POLL_SECONDS = 0.5
_RUN_COMMAND = "`tendril scheduler run --config JOB_TOML`"


@dataclasses.dataclass(frozen=True)
class Start:
    """How this scheduler process starts: a new run, a saved one to resume, or one already finished."""

    store: RunStateStore
    run_id: str
    resumed: bool
    finished_model: str | None = None  # a run that finished: its model file


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run goes on."""

    round: int  # the first round to train (rounds closed at the parameter server)
    rounds: int
    ps_worker: str  # "" when the parameter server never opened the run
    recovered: tuple[int, ...]  # rounds that closed while the scheduler was down
    forgotten: tuple[int, ...]  # rounds of the state file the parameter server does not have

    def describe(self, run_id: str) -> str:
        where = f" at the parameter server on {self.ps_worker}" if self.ps_worker else ""
        extra = f"; rounds {list(self.recovered)} closed while the scheduler was down" if self.recovered else ""
        return f"run {run_id}: resuming from round {self.round} of {self.rounds} ({self.round} closed{where}{extra})"


def config_of(config: JobConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def open_state(config: JobConfig, run_id: str) -> Start:
    """Open the out dir's state file: a new run (recorded as ``run_id``) or the saved one.

    ConfigError when the saved run began with another job config; StateError when the file is
    unusable.
    """
    out_dir = Path(config.scheduler.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    store = RunStateStore.open(out_dir)
    saved = store.saved_run()
    if saved is None:
        store.begin(run_id, config_of(config))
        return Start(store, run_id, resumed=False)
    saved_id, saved_config = saved
    differences = config_differences(saved_config, config_of(config))
    if differences:
        store.close()
        raise ConfigError(
            f"{out_dir} holds run {saved_id}, begun with another job config ({'; '.join(differences)}). "
            f"Resume it with `tendril scheduler resume {out_dir}` (or the job.toml it began with); to start a new "
            f"run instead, use another scheduler.out_dir or delete {out_dir / STATE_FILE}"
            + (" and give training.run_id a new value" if config.training.run_id else ""),
            key="scheduler.out_dir",
        )
    return Start(store, saved_id, resumed=True, finished_model=store.finished())


def saved_config(out_dir: Path) -> JobConfig:
    """The job config a saved run began with (its out dir: ``out_dir``)."""
    if not (out_dir / STATE_FILE).exists():
        raise StateError(f"{out_dir} holds no scheduler state ({STATE_FILE}); start a run with {_RUN_COMMAND}")
    store = RunStateStore.open(out_dir)
    try:
        saved = store.saved_run()
    finally:
        store.close()
    if saved is None:
        raise StateError(f"{out_dir / STATE_FILE} holds no run; start one with {_RUN_COMMAND}")
    config = JobConfig.model_validate(saved[1])
    # NOTE: the saved out_dir may be relative to where the run was started: the one given wins.
    return config.model_copy(update={"scheduler": config.scheduler.model_copy(update={"out_dir": str(out_dir)})})


class Recorder:
    """Writes a run's changes to its state file (the Run's and the servicer's callbacks)."""

    def __init__(self, store: RunStateStore) -> None:
        self.store = store

    def on_round(self, line: dict[str, Any]) -> None:
        self.store.add_round(line)

    def on_accept(self, member: Member) -> None:
        e = member.endpoints
        self.store.add_member(
            SavedMember(
                member.lease_id, member.worker_id, member.role.value, member.job_id, e.lease, e.job, e.parameter_server
            )
        )

    def on_assign(self, job_id: str, worker_id: str, assignment: Assignment, round: int, slot: int | None) -> None:
        self.store.add_assignment(
            SavedAssignment(assignment.epoch, assignment.slice.name, job_id, worker_id, round), slot
        )


# -- resuming ---------------------------------------------------------------------------------------


async def stop_old_members(channel: Any, store: RunStateStore) -> list[SavedMember]:
    """Cancel the jobs of the saved members, wait (bounded) for them to end, release their leases."""
    members = store.members()

    async def stop(m: SavedMember) -> None:
        job = JobHandle(channel(m.job_address), m.job_id, m.worker_id)
        await job.cancel("its scheduler restarted and resumes the run with new jobs")
        try:
            end = await asyncio.wait_for(job.wait_end(), STOP_TIMEOUT_SECONDS)
            log.info("resume.job_stopped", job_id=m.job_id, worker=m.worker_id, state=end.state)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            log.warning("resume.job_not_stopped", job_id=m.job_id, worker=m.worker_id, error=repr(exc))
        await LeaseKeeper(channel(m.lease_address), m.lease_id, m.worker_id).release()

    await asyncio.gather(*(stop(m) for m in members))
    store.end_members([m.lease_id for m in members])
    return members


async def closed_rounds(channel: grpc.aio.Channel, run_id: str, rounds: int) -> int | None:
    """How many rounds of the run closed at this parameter server; None when it does not know the run."""
    stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
    policy = RetryPolicy(codes=TRANSIENT_CODES, attempts=None, deadline=PS_ANSWER_SECONDS, max_backoff=2.0)
    request = paramserver_pb2.GetRoundRequest(run_id=run_id)
    deadline = time.monotonic() + SETTLE_SECONDS
    closed_seen = 0
    while True:
        try:
            reply = await retry(lambda: stub.GetRound(request, timeout=CALL_TIMEOUT_SECONDS), policy)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        if reply.state != paramserver_pb2.ROUND_STATE_CLOSED:
            return int(reply.round)
        # Closed: being aggregated (it opens the next round soon), or the run's last round is done.
        closed_seen += 1
        if int(reply.round) + 1 >= rounds and closed_seen >= 3:
            return int(reply.round) + 1
        if time.monotonic() > deadline:
            return int(reply.round)  # a close that does not end: the round is trained again
        await asyncio.sleep(SETTLE_POLL_SECONDS)


async def wait_reopened(stub: paramserver_pb2_grpc.ParameterServerServiceStub, run_id: str, timeout: float) -> None:
    """Until the parameter server's run is open again (a new aggregate job reopened it).

    NOTE: a resumed run is known to its parameter server, closed by the old aggregate job, so
    GetRound answers before the new aggregate job reopened it; a training job dispatched
    then would offer θ0 to a closed run and fail.
    """
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            async for change in stub.WatchRound(
                paramserver_pb2.WatchRoundRequest(run_id=run_id), timeout=CALL_TIMEOUT_SECONDS
            ):
                if change.status.run_state == paramserver_pb2.RUN_STATE_OPEN:
                    return
                state = paramserver_pb2.RunState.Name(change.status.run_state)
                break
        except grpc.aio.AioRpcError as exc:
            state = f"{exc.code().name}: {exc.details()}"
        await asyncio.sleep(SETTLE_POLL_SECONDS)
    raise SchedulerError(
        ErrorKind.DEADLINE_EXCEEDED,
        f"the parameter server did not reopen run {run_id} within {timeout:.0f} s (it is {state}); "
        "see its aggregate job's log",
        reason=SchedulerRunReason.PS_NOT_READY,
    )


def recovered_line(index: int) -> dict[str, Any]:
    """The metrics line of a round that closed while no scheduler heard its workers."""
    return {**round_line(index, [], started=0.0, closed=0.0), "recovered": True}


async def resume(channel: Any, run: Run, store: RunStateStore) -> ResumePoint:
    """Stop what the dead scheduler left, ask the parameter server where the run is, restore ``run``."""
    members = await stop_old_members(channel, store)
    old_ps = [m for m in store.members(ended=True) if m.role == Role.PARAMETER_SERVER.value]
    saved = store.rounds()
    closed: int | None = None
    ps_worker = ""
    if old_ps:
        ps = old_ps[-1]
        try:
            # NOTE: with streaming sync every fragment is a run of its own; the run resumes at the
            # round every fragment closed (a fragment ahead keeps its θ: its round is trained again).
            counts = [
                await closed_rounds(channel(ps.ps_address), run_id, run.rounds)
                for run_id in run_ids(run.run_id, fragments(run.config))
            ]
            closed = None if None in counts else min(c for c in counts if c is not None)
        except grpc.aio.AioRpcError as exc:
            raise SchedulerError(
                ErrorKind.UNAVAILABLE,
                f"cannot resume run {run.run_id}: its parameter server on {ps.worker_id} ({ps.ps_address}) does not "
                f"answer ({exc.code().name}: {exc.details()}); start that worker again, then resume",
                reason=SchedulerRunReason.NOT_RESUMABLE,
            ) from exc
        if closed is not None:
            ps_worker = ps.worker_id
    if closed is None:
        if saved:
            raise SchedulerError(
                ErrorKind.FAILED_PRECONDITION,
                f"cannot resume run {run.run_id}: {len(saved)} rounds finished but no parameter server knows the run "
                f"any more; to start a new run, delete {store.path}"
                + (" and give training.run_id a new value" if run.config.training.run_id else ""),
                reason=SchedulerRunReason.NOT_RESUMABLE,
            )
        closed = 0
    have = len(saved)
    recovered = tuple(range(have, closed))
    forgotten = tuple(line["round"] for line in saved if line["round"] >= closed)
    store.keep_rounds(closed, [recovered_line(r) for r in recovered])
    run.restore(store.rounds(), job_counter=store.job_counter(), cursor=store.slice_cursor(), ps_worker=ps_worker)
    point = ResumePoint(closed, run.rounds, ps_worker, recovered, forgotten)
    log.info(
        "run.resumed",
        run_id=run.run_id,
        round=closed,
        rounds=run.rounds,
        parameter_server=ps_worker,
        recovered=list(recovered),
        forgotten=list(forgotten),
        old_jobs=[m.job_id for m in members],
    )
    return point


async def pull_final(channel: Any, run: Run, store: RunStateStore, dest: Path) -> tuple[int, str]:
    """Every round closed while the scheduler was down: the model is the parameter server's θ
    (pulled to ``dest``); returns its round and the parameter server's address."""
    ps = [m for m in store.members(ended=True) if m.role == Role.PARAMETER_SERVER.value][-1]
    try:
        round_index = await pull_theta(
            channel(ps.ps_address), run_id=run.run_id, fragments=fragments(run.config), dest=dest
        )
    except TensorStreamError as exc:
        raise SchedulerError(
            ErrorKind.UNAVAILABLE,
            f"every round of run {run.run_id} closed but its parameters could not be pulled from the parameter "
            f"server on {ps.worker_id}: {exc.message}",
            reason=SchedulerRunReason.NO_FINAL_MODEL,
        ) from exc
    if round_index < run.rounds:
        await asyncio.to_thread(dest.unlink, True)
        raise SchedulerError(
            ErrorKind.UNAVAILABLE,
            f"the parameter server on {ps.worker_id} still serves θ of round {round_index} of run {run.run_id}, "
            f"not of its end ({run.rounds} rounds): its last round is still closing; resume again",
            reason=SchedulerRunReason.NO_FINAL_MODEL,
        )
    log.info("model.saved", path=str(dest), round=round_index)
    return round_index, ps.ps_address


__all__ = [
    "Recorder",
    "ResumePoint",
    "Start",
    "StateError",
    "closed_rounds",
    "open_state",
    "pull_final",
    "resume",
    "saved_config",
    "stop_old_members",
    "wait_reopened",
]
