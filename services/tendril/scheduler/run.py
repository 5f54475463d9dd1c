"""State of one DiLoCo run at the reference scheduler (no grpc): members, offers, progress.

The driver and the servicer feed it events (an offer arrived, a job reported progress, a lease
was lost) and act on what it answers (accept/reject, the directive, which slice, which round
finished). Everything runs on one asyncio loop, so there is no locking.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.scheduler.allocation import Endpoints, OfferIn
from tendril.scheduler.errors import SchedulerError, SchedulerReason
from tendril.scheduler.evaluation import AssetRef, Evaluation
from tendril.scheduler.jobconfig import JobConfig
from tendril.scheduler.metrics import WorkerRound, round_line
from tendril.scheduler.planner import SyncPlanner
from tendril.scheduler.slices import Assignment, SliceAssigner, SliceRef
from tendril.scheduler.state import SliceCursor

# (job id, worker id, assignment, the job's round, the job's data slot): a slice was handed out
OnAssign = Callable[[str, str, Assignment, int, "int | None"], None]


class Role(enum.Enum):
    TRAIN = "train"
    PARAMETER_SERVER = "parameter_server"
    EVAL = "eval"


class Directive(enum.Enum):
    CONTINUE = "continue"
    SCHEDULE_UPDATE = "schedule_update"
    DONE = "done"


# Sync modes in which a worker trains round r+1 while round r's update travels (its METRICS and
# UPDATE_RECEIVED of round r come late): overlapped, and streaming (fragment by fragment).
OVERLAPPING = ("overlapped", "streaming")


class Progress(enum.Enum):
    BATCH = "batch"
    METRICS = "metrics"
    UPDATE_SENT = "update_sent"
    UPDATE_RECEIVED = "update_received"
    FINISHED = "finished"


@dataclasses.dataclass
class Member:
    """An accepted lease and the job that runs under it."""

    worker_id: str
    lease_id: str
    role: Role
    endpoints: Endpoints
    job_id: str
    offer_expires_at: float = 0.0  # until then the lease may be confirmed (OfferIn.expires_at)
    lost: bool = False
    lost_reason: str = ""


@dataclasses.dataclass(frozen=True)
class ProgressIn:
    """One progress event of a training job."""

    job_id: str
    worker_id: str
    kind: Progress
    round: int
    batch_size: int = 0  # BATCH: samples, summed over the batches the report covers
    batch_seconds: float = 0.0  # BATCH: step seconds, summed likewise
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    batches: int = 1  # BATCH: consecutive batches the report covers, the last just finished


@dataclasses.dataclass(frozen=True)
class DirectiveOut:
    directive: Directive
    batches_until_update: int
    round: int


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The data set the run trains on."""

    dataset_id: str
    data_node_address: str
    slices: tuple[SliceRef, ...]
    seq_len: int
    vocab_size: int
    eval_slices: tuple[SliceRef, ...] = ()  # the held-out split: only the eval job reads these
    assets: tuple[AssetRef, ...] = ()  # the tokenizer / image processor, exported beside the model
    tokenizer: str = ""  # the manifest's tokenizer ("bytes": Tendril's byte tokenizer)
    # The manifest's summary for the jobs (tendril_models.DataSpec.to_dict()); empty: a v1 data
    # set, a causal-lm one of input_ids [seq_len] in a vocabulary of vocab_size.
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Trainer:
    member: Member
    round: int = -1
    finished: bool = False
    ready: tuple[int, float] | None = None  # (round, when): it had the update that begins that round


@dataclasses.dataclass
class _Round:
    started: float
    workers: dict[str, WorkerRound] = dataclasses.field(default_factory=dict)  # job id -> report
    done: bool = False


class Run:
    """One run: who works for it, where each job is, what each round produced."""

    def __init__(
        self,
        config: JobConfig,
        run_id: str,
        *,
        on_round: Callable[[dict[str, Any]], None] | None = None,
        on_assign: OnAssign | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.rounds = config.training.rounds
        self.target_steps = config.training.inner_steps
        # NOTE: overlapped sync trains through the sync instead of waiting for it (planner docstring).
        # Not streaming: its workers wait for a fragment's update where they push it again, inside
        # the round, which a later sync point does not help (measured in the lab: docs/WAN.md).
        self._planner = SyncPlanner(self.target_steps, hide_sync=config.training.sync == "overlapped")
        self._on_round = on_round or (lambda _line: None)
        self._clock = clock
        self._requests: dict[str, Role] = {}
        self.members: dict[str, Member] = {}  # lease id -> member
        self._trainers: dict[str, _Trainer] = {}  # job id -> trainer
        self._rounds: dict[int, _Round] = {}
        self._job_counter = 0
        self.completed_rounds: list[dict[str, Any]] = []
        self.dataset: Dataset | None = None
        self._assigner: SliceAssigner | None = None
        self.failed: str = ""
        self.lost = 0
        self._on_assign = on_assign or (lambda *_args: None)
        self._cursor = SliceCursor()
        self.ps_worker = ""  # when set, only this worker may host the parameter server (it holds the run's state)
        self.evaluation = Evaluation(config, run_id)

    def restore(self, rounds: list[dict[str, Any]], *, job_counter: int, cursor: SliceCursor, ps_worker: str) -> None:
        """Continue a saved run: its finished rounds, job numbering, slice cursor and parameter server host."""
        self.completed_rounds[:] = rounds  # in place: the metrics updater holds this list
        self._job_counter = job_counter
        self._cursor = cursor
        self.ps_worker = ps_worker

    # -- allocation ------------------------------------------------------------------------

    def register_request(self, request_id: str, role: Role) -> None:
        self._requests[request_id] = role

    def live(self, role: Role) -> list[Member]:
        return [m for m in self.members.values() if m.role is role and not m.lost]

    def needs(self, role: Role) -> int:
        """Leases of this role still missing."""
        if self.finished or self.failed:
            return 0
        if role is Role.EVAL:
            return self.evaluation.needs(len(self.live(role)))
        want = self.config.allocation.workers if role is Role.TRAIN else 1
        return max(0, want - len(self.live(role)))

    def consider_offer(self, offer: OfferIn) -> tuple[Member | None, str]:
        """Accept (the new member) or reject (None) an offer, with the reason."""
        role = self._requests.get(offer.request_id)
        if role is None:
            return None, f"request {offer.request_id!r} is not one of this scheduler's requests"
        if self.finished or self.failed:
            return None, f"run {self.run_id} is over"
        if not offer.lease_id:
            return None, "the offer names no lease"
        if self.needs(role) == 0:
            return None, f"run {self.run_id} has every {role.value} lease it needs"
        if any(m.worker_id == offer.worker_id for m in self.live(role)):
            return None, f"worker {offer.worker_id} already holds a {role.value} lease of run {self.run_id}"
        if role is Role.PARAMETER_SERVER and not offer.endpoints.parameter_server:
            return None, "the worker advertises no parameter server address"
        if role is Role.PARAMETER_SERVER and self.ps_worker and offer.worker_id != self.ps_worker:
            return None, f"the parameter server of run {self.run_id} must be on {self.ps_worker}, which holds its state"
        member = Member(
            offer.worker_id, offer.lease_id, role, offer.endpoints, self._next_job_id(role), offer.expires_at
        )
        self.members[offer.lease_id] = member
        return member, "accepted"

    def _next_job_id(self, role: Role) -> str:
        if role is Role.PARAMETER_SERVER:
            self._job_counter += 1
            return f"{self.run_id}-ps{self._job_counter}"
        if role is Role.EVAL:
            self._job_counter += 1
            return f"{self.run_id}-e{self._job_counter}"
        self._job_counter += 1
        return f"{self.run_id}-t{self._job_counter}"

    @property
    def parameter_server(self) -> Member | None:
        live = self.live(Role.PARAMETER_SERVER)
        return live[0] if live else None

    def lose(self, lease_id: str, reason: str) -> Member | None:
        """A member is gone (lease not renewable, job ended early); its work is dropped."""
        member = self.members.get(lease_id)
        if member is None or member.lost:
            return None
        member.lost = True
        member.lost_reason = reason
        if member.role is Role.EVAL:
            # NOTE: never fails the run: replaced like a trainer, or the run goes on without it.
            self.evaluation.lose(member.job_id, reason)
            return member
        if not self.finished:
            self.lost += 1
            if self.lost > self.config.allocation.max_lost:
                self.failed = (
                    f"{self.lost} leases or jobs of run {self.run_id} were lost (allocation.max_lost = "
                    f"{self.config.allocation.max_lost}); the last: {reason}"
                )
        trainer = self._trainers.pop(member.job_id, None)
        self._planner.leave(member.job_id)
        if trainer is not None and self._assigner is not None:
            self._assigner.leave(member.job_id)
        if member.role is Role.PARAMETER_SERVER and not self.finished:
            self.failed = f"the parameter server on {member.worker_id} was lost: {reason}"
        self._check_rounds()
        return member

    # -- data ------------------------------------------------------------------------------

    def set_dataset(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.evaluation.set_slices(dataset.eval_slices)
        self._assigner = SliceAssigner(dataset.slices, self.config.allocation.workers, seed=self.config.training.seed)
        self._assigner.restore(self._cursor.epoch, self._cursor.used)
        for job_id, trainer in self._trainers.items():
            self._assigner.join(job_id, self._cursor.slots.get(trainer.member.worker_id))

    def add_trainer(self, member: Member) -> None:
        """A training job was dispatched for ``member``."""
        self._trainers[member.job_id] = _Trainer(member)
        self._planner.join(member.job_id)
        if self._assigner is not None:
            self._assigner.join(member.job_id, self._cursor.slots.get(member.worker_id))

    def assign_slice(self, job_id: str, worker_id: str, cached: Iterable[str]) -> tuple[Assignment, Dataset]:
        if self.evaluation.owns(job_id) and self.dataset is not None:
            return self.evaluation.assign(job_id), self.dataset  # held-out slices only
        trainer = self._trainer(job_id, worker_id)
        if self.dataset is None or self._assigner is None:
            raise SchedulerError(
                ErrorKind.UNAVAILABLE,
                "the scheduler has not read the data set manifest yet; retry",
                reason=SchedulerReason.NO_DATASET,
            )
        assignment = self._assigner.assign(trainer.member.job_id, cached)
        self._on_assign(
            job_id,
            trainer.member.worker_id,
            assignment,
            # (before its first report a job is in the run's first open round)
            trainer.round if trainer.round >= 0 else len(self.completed_rounds),
            self._assigner.slot_of(job_id),
        )
        return assignment, self.dataset

    def _trainer(self, job_id: str, worker_id: str) -> _Trainer:
        trainer = self._trainers.get(job_id)
        if trainer is None:
            raise SchedulerError(
                ErrorKind.NOT_FOUND,
                f"job {job_id!r} is not a live training job of run {self.run_id}",
                reason=SchedulerReason.UNKNOWN_JOB,
                metadata={"job_id": job_id},
            )
        if worker_id and worker_id != trainer.member.worker_id:
            raise SchedulerError(
                ErrorKind.PERMISSION_DENIED,
                f"job {job_id!r} runs on worker {trainer.member.worker_id}, not {worker_id}",
                reason=SchedulerReason.WRONG_WORKER,
            )
        return trainer

    # -- progress --------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return len(self.completed_rounds) >= self.rounds

    def progress(self, event: ProgressIn) -> DirectiveOut:
        """Record one progress event and say what the job does next."""
        if self.evaluation.owns(event.job_id):
            done = self.evaluation.report(event.round, event.metrics, finished=event.kind is Progress.FINISHED)
            return DirectiveOut(Directive.DONE if done else Directive.CONTINUE, 0, event.round)
        trainer = self._trainer(event.job_id, event.worker_id)
        if event.round >= self.rounds or self.finished:
            trainer.finished = True
            return DirectiveOut(Directive.DONE, 0, event.round)
        late = event.round < trainer.round and not self._rejoin(trainer, event)
        if late and not self._late_report(trainer, event):
            raise SchedulerError(
                ErrorKind.FAILED_PRECONDITION,
                f"job {event.job_id} reported round {event.round} after round {trainer.round}",
                reason=SchedulerReason.STALE_ROUND,
            )
        if event.round > trainer.round:
            trainer.round = event.round
            self._check_rounds()
        rnd = self._round(event.round)
        report = rnd.workers.get(event.job_id)
        if report is None:
            report = rnd.workers[event.job_id] = WorkerRound(trainer.member.worker_id)
            report.started_at = self._began(trainer, event)
            before = self._rounds.get(event.round - 1)
            ended = before.workers.get(event.job_id) if before is not None else None
            if ended is not None and not ended.received:  # overlapped: it trains on while round r-1 syncs
                ended.ended_at = report.started_at
            rnd.started = min(rnd.started, report.started_at)
            self._planner.began(event.job_id, event.round, report.started_at)
        metrics = event.metrics
        if event.kind is Progress.BATCH:
            loss = metrics.get("loss")
            report.add_batch(event.batch_size, event.batch_seconds, loss, batches=event.batches)
            # NOTE: planning uses the time between a job's batch reports as seen here, not the
            # executor's compute time: what must line up is when updates arrive, and that includes
            # every per-batch cost (data, reports, a CPU shared with other jobs).
            left = self._planner.batch(event.job_id, event.round, self._clock(), event.batches)
            if left is None:
                return DirectiveOut(Directive.CONTINUE, 0, event.round)
            return DirectiveOut(Directive.SCHEDULE_UPDATE, left, event.round)
        if event.kind is Progress.METRICS:
            if "loss" in metrics and math.isfinite(metrics["loss"]):
                report.loss = float(metrics["loss"])
            if "samples" in metrics:
                report.samples = int(metrics["samples"])
            report.bytes_up = int(metrics.get("bytes_sent", report.bytes_up))
            report.send_seconds = float(metrics.get("send_seconds", report.send_seconds))
            if "compute_seconds" in metrics:
                report.compute_seconds = float(metrics["compute_seconds"])
            report.data_wait_seconds = float(metrics.get("data_wait_seconds", report.data_wait_seconds))
            report.slices_skipped = int(metrics.get("slices_skipped", report.slices_skipped))
            report.train_seconds = float(metrics.get("train_seconds", report.train_seconds))
            if metrics.get("update_missed"):
                report.missed = True
                self._planner.received(event.job_id, event.round, None)
                self._check_rounds()
        elif event.kind is Progress.UPDATE_SENT:
            report.arrived_at = self._clock()
            self._planner.pushed(event.job_id, event.round, report.arrived_at)
        elif event.kind is Progress.UPDATE_RECEIVED:
            report.received_at = self._clock()
            self._planner.received(event.job_id, event.round, report.received_at)
            if not late:  # with overlapped sync the job began the next round at its push already
                trainer.ready = (event.round + 1, report.received_at)
                self._planner.began(event.job_id, event.round + 1, report.received_at)
            report.bytes_down = int(metrics.get("bytes_received", 0))
            report.receive_seconds = float(metrics.get("receive_seconds", 0.0))
            report.contributors = int(metrics.get("contributors", 0))
            report.received = True
            self._check_rounds()
            if event.round + 1 >= self.rounds:
                trainer.finished = True
                return DirectiveOut(Directive.DONE, 0, event.round)
            return DirectiveOut(Directive.CONTINUE, 0, max(event.round + 1, trainer.round))
        elif event.kind is Progress.FINISHED:
            trainer.finished = True
            return DirectiveOut(Directive.DONE, 0, event.round)
        return DirectiveOut(Directive.CONTINUE, 0, event.round)

    def _late_report(self, trainer: _Trainer, event: ProgressIn) -> bool:
        """A report of the round before the job's current one that overlapped sync sends late:
        the round's METRICS and UPDATE_RECEIVED, once the job trains the next round already."""
        return (
            self.config.training.sync in OVERLAPPING
            and event.round == trainer.round - 1
            and event.kind in (Progress.METRICS, Progress.UPDATE_RECEIVED)
            and event.round in self._rounds
        )

    def _rejoin(self, trainer: _Trainer, event: ProgressIn) -> bool:
        """Overlapped sync: a job that missed round r's update (it said so) fetched θ again and
        found round r still open; it trains round r again, and its reports of round r+1 so far
        are dropped (it reports that round again when it gets there)."""
        rnd = self._rounds.get(event.round)
        report = rnd.workers.get(event.job_id) if rnd is not None else None
        if event.round != trainer.round - 1 or report is None or not report.missed:
            return False
        report.missed, report.arrived_at, report.ended_at = False, None, None
        following = self._rounds.get(trainer.round)
        if following is not None:
            following.workers.pop(event.job_id, None)
        trainer.round = event.round
        return True

    def _began(self, trainer: _Trainer, event: ProgressIn) -> float:
        """When the job began this round (scheduler clock)."""
        if trainer.ready is not None and trainer.ready[0] == event.round:
            return trainer.ready[1]
        # Its first round, or it fetched θ again after missing one: its first report tells.
        return self._clock() - (event.batch_seconds if event.kind is Progress.BATCH else 0.0)

    def _round(self, index: int) -> _Round:
        rnd = self._rounds.get(index)
        if rnd is None:
            rnd = self._rounds[index] = _Round(started=self._clock())
        return rnd

    def _planned(self, index: int, rnd: _Round) -> float | None:
        """The round's sync point, seconds after ``rnd.started``."""
        plan = self._planner.plan(index)
        return None if plan is None or plan.deadline is None else plan.deadline - rnd.started

    def _check_rounds(self) -> None:
        """Close every round whose live participants all received its update (or moved on)."""
        for index in sorted(self._rounds):
            rnd = self._rounds[index]
            if rnd.done:
                continue
            pending = [job for job, report in rnd.workers.items() if self._pending(job, report, index)]
            if pending or not any(r.received or r.missed for r in rnd.workers.values()):
                return
            rnd.done = True
            # NOTE: a round whose update every worker missed (it was gone when they asked, so they
            # fetched θ, which holds it) still ended: without this the run waited for it forever
            # while its workers trained on (seen with streaming sync in the lab).
            takers = [r for r in rnd.workers.values() if r.received] or list(rnd.workers.values())
            line = round_line(
                index, takers, started=rnd.started, closed=self._clock(), planned_seconds=self._planned(index, rnd)
            )
            self.completed_rounds.append(line)
            self._on_round(line)

    def _pending(self, job: str, report: WorkerRound, index: int) -> bool:
        """Round ``index`` waits for this job: it is live, has not had the round's update, and is
        still in the round — or (overlapped sync) pushed it and trains the next one meanwhile."""
        trainer = self._trainers.get(job)
        if trainer is None or report.received or report.missed:
            return False
        overlapping = report.arrived_at is not None and trainer.round == index + 1
        return trainer.round <= index or (overlapping and self.config.training.sync in OVERLAPPING)

    def trainers_finished(self) -> bool:
        """Every live training job was told DONE."""
        return all(t.finished for t in self._trainers.values())

    def live_trainers(self) -> list[Member]:
        return [t.member for t in self._trainers.values()]

    def expected_workers(self) -> list[str]:
        """The workers whose updates each round waits for: those of the live training jobs, sorted."""
        return sorted({t.member.worker_id for t in self._trainers.values()})
