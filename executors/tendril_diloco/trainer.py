"""The DiLoCo loop of one worker: inner AdamW steps, sync points, outer updates.

Round r: θ_start is the run's θ at the start of the round. The worker trains (AdamW state
kept across rounds), reports its batches and obeys the scheduler's directive; at the sync
point it sends Δ = θ_start − θ_local with weight = samples it trained on this round, waits for
the parameter server's update u and continues from θ_start + u. A worker that missed a round
(its update came too late, the round closed without it) fetches the run's current θ and
joins the round that is open. Which failure means what is decided by the bridge's ErrorInfo
reason (:class:`tendril_sdk.BridgeReason`), not by the status code alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import torch

from tendril_diloco import distributed
from tendril_diloco.config import TrainConfig
from tendril_diloco.data import Batch, Batches, load_slice
from tendril_diloco.eager import make_proxy, miss
from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_diloco.feedback import ErrorFeedback
from tendril_diloco.fragments import Fragments, due, push_points, take
from tendril_diloco.inner import InnerLoop
from tendril_diloco.model import context_length, load_model, replica_config
from tendril_diloco.params import (
    HandOff,
    Params,
    Updates,
    apply_update,
    compute_delta,
    load_into,
    load_params,
    save_params,
    snapshot,
)
from tendril_diloco.sync import SyncMode, overlaps, rebase
from tendril_models import get_task
from tendril_models.batches import batch_size
from tendril_sdk import (
    DEFAULT_RETRY,
    BridgeClient,
    BridgeError,
    BridgeReason,
    Directive,
    DirectiveKind,
    ProgressKind,
    handoff_folder,
)
from tendril_sdk import ReceivedUpdate as Received
from tendril_sdk.files import UPDATES

THETA0 = "params/theta0.safetensors"
CURRENT = "params/current.safetensors"
SYNCED = "params/synced.safetensors"  # with keep_updates: the synchronized θ after the last round applied
KEPT = ".reused"  # in the hand-off folder: Δ files kept from round to round (tendril_diloco.params.HandOff)
PUBLISH_RETRY_SECONDS = 60.0  # the parameter server may open the run a moment after we start
# NOTE: the aggregate job that opens the run at the parameter server is dispatched next to
# ours; until it runs, θ0 cannot be published (RUN_NOT_OPEN). Everything else is an answer.
PUBLISH_RETRY = dataclasses.replace(
    DEFAULT_RETRY, reasons=frozenset({BridgeReason.RUN_NOT_OPEN}), deadline=PUBLISH_RETRY_SECONDS
)
# SendUpdate answers that mean "this round went on without you": fetch θ, join the open round.
ROUND_MISSED = frozenset(
    {BridgeReason.ROUND_CLOSED, BridgeReason.ROUND_NOT_OPEN, BridgeReason.RUN_FINISHED, BridgeReason.RUN_CLOSED}
)
# ReceiveUpdate answers that mean "this round's update will not come to you" (a deadline that
# ran out, at the parameter server or on the call itself, means the same).
UPDATE_MISSED = frozenset(
    {
        BridgeReason.ROUND_STILL_OPEN,
        BridgeReason.UPDATE_GONE,
        BridgeReason.ROUND_NOT_OPEN,
        BridgeReason.RUN_CLOSED,
        BridgeReason.PUSH_LOST,
    }
)
# NOTE: every progress report costs CPU in three processes (executor, job bridge, scheduler):
# about 2 ms a batch, 5 % of a 40 ms step on a busy host. Batches are reported together, at
# most every PROGRESS_INTERVAL_SECONDS, which is all the planner needs while the sync point is
# far (it plans in time, and a report covering n batches counts as n); the first batch of a
# round and, once at most NEAR_BATCHES are left, every batch is reported at once, so that the
# scheduler's last corrections reach the worker as they did with a report per batch.
PROGRESS_INTERVAL_SECONDS = 0.25
NEAR_BATCHES = 4


@dataclasses.dataclass
class RoundStats:
    """What this worker did in the current round."""

    samples: int = 0
    batches: int = 0
    loss_sum: float = 0.0
    compute_seconds: float = 0.0
    data_wait_seconds: float = 0.0  # time spent waiting for NextSlice
    slices_skipped: int = 0  # slices that could not be read (skipped, not trained on)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, batch_size: int, loss: float, seconds: float) -> None:
        self.samples += batch_size
        self.batches += 1
        self.loss_sum += loss * batch_size
        self.compute_seconds += seconds

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.samples if self.samples else float("nan")


@dataclasses.dataclass
class StreamRound:
    """Streaming sync: round r's fragment exchanges, until every fragment pushed in it is synced."""

    stats: RoundStats | None = None  # the round's training, set at its sync point
    out: set[int] = dataclasses.field(default_factory=set)  # fragments pushed whose update is not applied
    bytes_sent: int = 0
    send_seconds: float = 0.0
    bytes_received: int = 0
    receive_seconds: float = 0.0
    contributors: int | None = None  # the fewest of any fragment's round
    missed: bool = False  # a fragment's update did not come (its θ was fetched again)


# One fragment's exchange: (bytes sent, seconds sending, its update or None when it was missed).
FragmentExchange = tuple[int, float, "Received | None"]


class Trainer:
    """One worker's part of a DiLoCo run."""

    def __init__(
        self,
        config: TrainConfig,
        bridge: BridgeClient,
        *,
        log: Callable[..., Any],
        progress_interval: float = PROGRESS_INTERVAL_SECONDS,
        near_batches: int = NEAR_BATCHES,
    ) -> None:
        self.config = config
        self.bridge = bridge
        self.log = log
        self.progress_interval = progress_interval
        self.near_batches = max(0, near_batches)  # 0 batches left is always reported
        self.round = 0
        self.stats = RoundStats()
        self._unreported = RoundStats()  # batches of this round not reported yet
        self._reported_at = 0.0  # when the last BATCH report left (perf_counter)
        self._remaining: int | None = None  # batches until the sync point, once scheduled
        self._start: Params = {}
        self.group: distributed.Group | None = None  # the replicas of a several-GPU worker
        self._replica_batches: list[Batch] = []
        self._handoffs: dict[int | None, HandOff] = {}  # by fragment (None: θ whole)
        self._folder: str | None = None  # where Δ and updates go: handoff/ or updates/ (see _handoff_folder)
        self._updates = Updates()  # the received updates, read through mappings kept from round to round
        # What the wire codec dropped from the last Δ sent (error feedback), when the run uses it.
        self._feedback = (
            ErrorFeedback(config.codec, beta=config.sparse_beta, block_size=config.codec_block_size)
            if config.feedback
            else None
        )
        # overlapped sync: the background push/pull of the round before and the θ trained on from
        # since (the local θ pushed, or the eager proxy's point); the eager proxy (None: local)
        self._pending: tuple[asyncio.Task[Received | None], Params] | None = None
        self._proxy = (
            make_proxy(config.delayed_proxy, lr=config.outer_lr, momentum=config.outer_momentum)
            if config.sync == SyncMode.OVERLAPPED
            else None
        )
        # streaming sync (set once θ is known): the fragments, each one's exchange in flight (with
        # the round it was pushed in), the fragments pushed this round, samples since each one's
        # last push, the rounds not fully synced yet, and each fragment's error feedback
        self._frags: Fragments | None = None
        self._frag_tasks: dict[int, tuple[int, asyncio.Task[FragmentExchange]]] = {}
        self._frag_pushed: set[int] = set()
        self._frag_samples: list[int] = []
        self._stream_rounds: dict[int, StreamRound] = {}
        self._frag_feedback: list[ErrorFeedback] | None = None

    # -- setup -----------------------------------------------------------------------------

    async def _setup_model(self) -> None:
        from accelerate import Accelerator

        cfg = self.config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        processes = distributed.plan(cfg.processes)
        distributed.narrow_devices(processes, 0)
        precision = resolve_mixed_precision(cfg.mixed_precision)
        try:
            self.accelerator = Accelerator(mixed_precision=precision)
        except (ValueError, RuntimeError) as exc:
            raise ExecutorError(
                f"mixed precision {precision!r} is not available here: {exc} (use --mixed-precision no)",
                reason=ExecutorReason.MIXED_PRECISION,
            ) from exc
        model, folder = await load_model(cfg, self.bridge)
        self.data = cfg.data_spec
        self.task = get_task(cfg.model.task)
        self.max_seq_len = context_length(model)
        self.theta0 = snapshot(model)
        if processes.world > 1:
            replica = replica_config(cfg, precision, folder)
            self.group = await asyncio.to_thread(distributed.Group.start, processes, self.bridge.work_dir, replica)
            self.group.command("model")
        self.inner = InnerLoop(self.accelerator, model, cfg.inner, self.task, self.data, self.group)
        self.log(
            "model.ready",
            task=self.task.name,
            model_type=str(getattr(model.config, "model_type", "")),
            device=str(self.accelerator.device),
            mixed_precision=precision,
            processes=processes.world,
            parameters=sum(v.numel() for v in self.theta0.values()),
            model_parameters=sum(p.numel() for p in model.parameters()),
            adapter=cfg.finetune.method if cfg.finetune is not None else "",
        )

    @property
    def _plain_model(self) -> torch.nn.Module:
        return self.inner.plain_model

    def _load(self, theta: Params) -> None:
        """θ into the model (and every replica's)."""
        load_into(self._plain_model, theta)
        if self.group is not None:
            self.group.command("load")
            self.group.broadcast_params(self._plain_model)

    async def _join_run(self) -> None:
        """Offer θ0 (the first offer of the run wins), then start from the run's current θ."""
        if self.config.sync == SyncMode.STREAMING:
            await self._join_fragments()
            return
        save_params(self.theta0, self.bridge.work_dir / THETA0)
        published = await self.bridge.publish_parameters(THETA0, retry_policy=PUBLISH_RETRY)
        self.log("parameters.published", accepted=published.accepted)
        (self.bridge.work_dir / THETA0).unlink(missing_ok=True)
        await self._resync()

    async def _resync(self) -> None:
        """Continue from the parameter server's current θ and round."""
        fetched = await self.bridge.fetch_parameters(CURRENT)
        round_index = fetched.round
        theta = load_params(fetched.path)
        self._load(theta)
        self._start = theta
        self.round = round_index
        if self._proxy is not None:
            self._proxy.reset()  # the rounds since the last update applied are not known
        self.stats, self._unreported = RoundStats(), RoundStats()
        self._remaining = None
        self.log("parameters.fetched", round=round_index)

    # -- training --------------------------------------------------------------------------

    def _step(self, batch: Batch) -> tuple[float, float]:
        """One inner step: (loss, seconds); with replicas, each takes its batch and the loss is theirs too."""
        if self.group is None:
            return self.inner.step(batch)
        self.group.send([("step", None), *(("step", b) for b in self._replica_batches)])
        loss, seconds = self.inner.step(batch)
        return self.group.mean_loss(loss, batch_size(batch))[0], seconds

    async def _next_batch(self, batches: Batches) -> tuple[Batch, int]:
        """This process's batch (and each replica's), and the samples of all of them."""
        batch = await batches.next()
        self._replica_batches = [await batches.next() for _ in range(self.group.world - 1)] if self.group else []
        return batch, batch_size(batch) + sum(batch_size(b) for b in self._replica_batches)

    async def run(self) -> None:
        """Train until the scheduler says DONE.

        # NOTE: a progress report travels while the next batch trains: its answer (the
        # scheduler's directive, counted from the last batch it covers) is applied once that next
        # batch is done, so the report's round trip (a few ms on a busy host) is off the training
        # path. When the sync point is at most one batch away, the report is awaited before the
        # next batch starts, so a round never runs a batch past its sync point. Between reports
        # (see PROGRESS_INTERVAL_SECONDS) the batches left are counted down here.
        #
        # NOTE: that next batch's step runs in a worker thread, so that the event loop carries
        # the report's call meanwhile; every other step runs on the loop's own thread. Handing a
        # step to a thread and back wakes two threads, and on a host whose cores are all busy each
        # wake-up waits for a core: 2.7 ms a 44 ms batch in `make demo` at a load average of 4.
        # SIGTERM is handled once the step in progress ends either way (asyncio.run waits for a
        # worker thread's step too).
        """
        await self._setup_model()
        clean = False
        try:
            await self._train()
            clean = True
        finally:
            self._drop_pending()
            if self.group is not None:
                self.group.stop(clean=clean)

    async def _train(self) -> None:
        await self._join_run()
        batches = Batches(
            self._next_slice,
            self.config.inner.batch_size,
            lambda path: load_slice(path, self.task, self.max_seq_len),
            on_skip=self._slice_skipped,
            on_wait=self._data_waited,
        )
        try:
            await self._train_on(batches)
        finally:
            batches.close()

    async def _train_on(self, batches: Batches) -> None:
        report: asyncio.Task[Directive] | None = None  # the last report, not answered yet
        while True:
            if report is not None and (self._remaining is not None and self._remaining <= 1):
                directive, report = await report, None
                if self._apply(directive, ahead=0):
                    return
                if self._remaining == 0:
                    if not await self._sync():
                        return
                    continue
            batch, size = await self._next_batch(batches)
            if report is not None or self._pending is not None or self._frag_tasks:  # the loop carries the calls
                loss, seconds = await asyncio.to_thread(self._step, batch)
            else:
                loss, seconds = self._step(batch)
            if not math.isfinite(loss):
                raise ExecutorError(
                    f"the loss became {loss} in round {self.round}; "
                    "lower training.inner.lr, or set training.mixed_precision to 'no'",
                    reason=ExecutorReason.LOSS_NOT_FINITE,
                )
            self.stats.add(size, loss, seconds)
            self._unreported.add(size, loss, seconds)
            self._frag_samples = [n + size for n in self._frag_samples]
            if report is not None:  # the answer to the report sent after the batch before this one
                directive, report = await report, None
                if self._apply(directive, ahead=1):
                    return
            elif self._remaining is not None:
                self._remaining = max(0, self._remaining - 1)
            if not await self._catch_up(wait=False):
                return
            if self._frags is not None and not await self._stream_step():
                return
            if self._report_due():
                report = asyncio.create_task(self._report_batches())
            if self._remaining == 0:
                assert report is not None  # 0 left <= near_batches: just reported
                directive, report = await report, None
                if self._apply(directive, ahead=0):
                    return
                if self._remaining == 0 and not await self._sync():
                    return

    def _report_due(self) -> bool:
        """Report now: while the round has no sync point yet, the sync point near, or the interval
        passed.

        NOTE: until a directive names the round's sync point every batch is reported, so a model
        whose batches take milliseconds cannot run past the planned inner steps during one
        progress interval; once it is named, reports cover several batches until it is near.
        """
        return (
            self._remaining is None
            or self._remaining <= self.near_batches
            or time.perf_counter() - self._reported_at >= self.progress_interval
        )

    def _report_batches(self) -> Coroutine[Any, Any, Directive]:
        """One BATCH report covering every batch trained since the last one."""
        done, self._unreported = self._unreported, RoundStats()
        self._reported_at = time.perf_counter()
        return self.bridge.report_progress(
            ProgressKind.BATCH,
            self.round,
            batch_size=done.samples,
            batch_seconds=done.compute_seconds,
            metrics={"loss": done.mean_loss},
            batches=done.batches,
        )

    def _apply(self, directive: Directive, *, ahead: int) -> bool:
        """Take a batch report's answer once ``ahead`` (0 or 1) more batches ran after the reported one.

        ``_remaining`` is the batches left after the last batch the directives have counted: the
        reported one, plus the ``ahead`` batch counted here. True means DONE.
        """
        if directive.kind == DirectiveKind.DONE:
            self.log("run.done", round=self.round)
            return True
        if directive.kind == DirectiveKind.SCHEDULE_UPDATE:
            self._remaining = max(0, directive.batches_until_update - ahead)
        elif self._remaining is not None:
            self._remaining = max(0, self._remaining - ahead)
        return False

    def _slice_skipped(self, path: Path, error: ExecutorError) -> None:
        self.stats.slices_skipped += 1
        self.log("slice.skipped", slice=path.name, reason=str(error.reason), error=error.message)

    async def _next_slice(self) -> Path:
        return (await self.bridge.next_slice()).path

    def _data_waited(self, seconds: float) -> None:
        self.stats.data_wait_seconds += seconds

    async def _sync(self) -> bool:
        """Send Δ, apply the round's update; False when the scheduler says the run is done.

        With ``sync = "overlapped"`` (not in the run's last round) the push and the pull run in
        the background and this returns at once; :meth:`_catch_up` applies the update when it
        came (see :mod:`tendril_diloco.sync`).
        """
        if self._frags is not None:
            return await self._sync_fragments()
        if not await self._catch_up(wait=True):
            return False
        if self.stats.batches == 0:  # the update of the round before was missed: θ fetched, start afresh
            return True
        r, stats = self.round, self.stats
        local = snapshot(self._plain_model)
        delta_rel = f"{self._handoff_folder()}/delta-{r:05d}.safetensors"
        delta = compute_delta(self._start, local)
        if self._feedback is not None:
            delta = self._feedback.compensate(delta)  # Δ + what the codec dropped last round
        await self.bridge.report_progress(ProgressKind.UPDATE_SENT, r)
        if overlaps(self.config.sync, r, self.config.rounds):
            pushed = local
            if self._proxy is not None:  # round r+1 trains from θ_r + û_r (tendril_diloco.eager)
                pushed = self._proxy.point(self._start, delta)
                self._load(pushed)
            self._pending = (asyncio.create_task(self._exchange(r, stats, delta_rel, delta)), pushed)
            self.round, self.stats, self._unreported, self._remaining = r + 1, RoundStats(), RoundStats(), None
            return True
        received = await self._exchange(r, stats, delta_rel, delta)
        if received is None:
            await self._resync()
            return True
        theta, _ = self._synced(r, received)
        self._load(theta)
        self.round, self.stats, self._unreported, self._remaining = r + 1, RoundStats(), RoundStats(), None
        return await self._received(r, received)

    async def _exchange(self, r: int, stats: RoundStats, delta_rel: str, delta: Params) -> Received | None:
        """Save Δ of round r (``delta``) as ``delta_rel`` (hand-off folder), push it, report the round,
        pull its update; None: the round went on without this worker (fetch θ again)."""
        try:
            # NOTE: written in a worker thread: with overlapped sync this task runs beside the next
            # round's first steps, and writing a large Δ on the loop would hold them up.
            digest = await asyncio.to_thread(self._handoff(None).write, delta, self.bridge.work_dir / delta_rel)
            sent = await self.bridge.send_update(delta_rel, r, float(stats.samples), digest=digest)
            bytes_sent, send_seconds = sent.bytes_sent, sent.seconds
            if self._feedback is not None:
                self._feedback.sent(delta)
        except BridgeError as exc:
            if exc.reason == BridgeReason.ALREADY_COMMITTED:
                bytes_sent, send_seconds = 0, 0.0  # a retried push that had already counted
                if self._feedback is not None:
                    self._feedback.sent(delta)
            elif exc.reason in ROUND_MISSED:
                self.log("round.missed", round=r, reason=str(exc.reason), error=exc.message)
                return None
            else:
                raise
        finally:
            (self.bridge.work_dir / delta_rel).unlink(missing_ok=True)
        metrics = {
            "loss": stats.mean_loss,
            "samples": stats.samples,
            "batches": stats.batches,
            "compute_seconds": stats.compute_seconds,
            "data_wait_seconds": stats.data_wait_seconds,
            "slices_skipped": stats.slices_skipped,
            "train_seconds": time.perf_counter() - stats.started,
            "bytes_sent": bytes_sent,
            "send_seconds": send_seconds,
        }
        if self._feedback is not None:
            metrics["residual_norm"] = self._feedback.norm()
        await self.bridge.report_progress(ProgressKind.METRICS, r, metrics=metrics)
        try:
            # (reuse_files: the update's tensors are let go of in _synced, before the next round's call)
            received = await self.bridge.receive_update(
                r,
                path=f"{self._handoff_folder()}/round-{r}.safetensors",
                timeout_seconds=self.config.receive_timeout,
                reuse_files=True,
            )
        except BridgeError as exc:
            if exc.reason not in UPDATE_MISSED and exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            self.log("round.update_missed", round=r, reason=str(exc.reason), error=exc.message)
            return None
        self.log("round.done", round=r, loss=stats.mean_loss, samples=stats.samples, contributors=received.contributors)
        return received

    def _handoff_folder(self) -> str:
        """The work dir's folder for the files handed to the bridge every round (Δ, updates):
        handoff/, held in memory, when the worker offers it and they fit (tendril_sdk.files);
        updates/ otherwise, and with keep_updates (every round's update stays: not in memory)."""
        if self._folder is None:
            nbytes = sum(v.numel() * 4 for v in self.theta0.values())  # (fp32)
            keep = self.config.keep_updates
            self._folder = UPDATES if keep else handoff_folder(self.bridge.work_dir, nbytes)
            self.log("handoff.folder", folder=self._folder, model_bytes=nbytes, keep_updates=keep)
        return self._folder

    def _handoff(self, fragment: int | None) -> HandOff:
        """Where Δ of θ (``fragment`` None) or of one fragment is written for the bridge to push."""
        handoff = self._handoffs.get(fragment)
        if handoff is None:
            stem = "delta" if fragment is None else f"delta-f{fragment}"
            folder = self.bridge.work_dir / self._handoff_folder() / KEPT
            handoff = self._handoffs[fragment] = HandOff(folder, stem)
        return handoff

    def _synced(self, r: int, received: Received) -> tuple[Params, Params]:
        """θ_{r+1} = θ_r + u_r, the parameter server's θ after round r (it becomes the start of Δ), and u_r
        (views of the received file, see params.Updates: let go of before the next ReceiveUpdate)."""
        update = self._updates.load(received.path)
        # NOTE: in place: θ_r is not needed once θ_{r+1} is known (the eager proxy keeps Δ, not θ_r;
        # self._start's tensors are this trainer's own, never the model's or a mapped file's).
        theta = apply_update(self._start, update, in_place=True)
        self._start = theta
        if self.config.keep_updates:
            save_params(theta, self.bridge.work_dir / SYNCED)
        else:
            received.path.unlink(missing_ok=True)
        return theta, update

    async def _received(self, r: int, received: Received) -> bool:
        """Report round r's update as applied; False when the scheduler says the run is done."""
        directive = await self.bridge.report_progress(
            ProgressKind.UPDATE_RECEIVED,
            r,
            metrics={
                "bytes_received": received.bytes_received,
                "receive_seconds": received.seconds,
                "contributors": received.contributors,
            },
        )
        return directive.kind != DirectiveKind.DONE

    async def _catch_up(self, *, wait: bool) -> bool:
        """Apply the overlapped update of the round before, once it came (``wait``: wait for it).

        The local θ is rebased onto the new synchronized θ, keeping the inner steps made since
        the push; a missed round means fetching θ again. False when the scheduler says DONE.
        """
        if self._pending is None or not (wait or self._pending[0].done()):
            return True
        task, pushed = self._pending
        self._pending = None
        received = await task
        r = self.round - 1
        if received is None:
            # NOTE: the scheduler counts a worker that pushed round r as still pulling it (it
            # moved on to round r+1 already); this tells it that the update will not come.
            await self.bridge.report_progress(ProgressKind.METRICS, r, metrics={"update_missed": 1.0})
            await self._resync()
            return True
        theta, update = self._synced(r, received)
        if self._proxy is not None:
            self._proxy.arrived(update, received.contributors)
        self.log("round.rebased", round=r, proxy_miss=miss(theta, pushed, update))
        self._load(rebase(snapshot(self._plain_model), theta, pushed))
        return await self._received(r, received)

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[0].cancel()
            self._pending = None
        for _, task in self._frag_tasks.values():
            task.cancel()
        self._frag_tasks.clear()

    # -- streaming sync (tendril_diloco.fragments) ------------------------------------------

    async def _join_fragments(self) -> None:
        """Offer each fragment's θ0 to its run, then start from every fragment's current θ."""
        cfg = self.config
        # NOTE: each fragment is a run of its own at the parameter server, with its own outer momentum.
        frags = Fragments(
            self.theta0,
            cfg.fragments,
            proxy=lambda: make_proxy(cfg.delayed_proxy, lr=cfg.outer_lr, momentum=cfg.outer_momentum),
        )
        for f, group in enumerate(frags.groups):
            rel = f"params/theta0-f{f}.safetensors"
            save_params(take(self.theta0, group), self.bridge.work_dir / rel)
            published = await self.bridge.publish_parameters(rel, fragment=f, retry_policy=PUBLISH_RETRY)
            self.log("parameters.published", fragment=f, accepted=published.accepted)
            (self.bridge.work_dir / rel).unlink(missing_ok=True)
        self._frags = frags
        self._frag_samples = [0] * len(frags)
        if self._feedback is not None:  # NOTE: one residual per fragment: each is sent on its own
            self._frag_feedback = [
                ErrorFeedback(cfg.codec, beta=cfg.sparse_beta, block_size=cfg.codec_block_size) for _ in frags.groups
            ]
        theta = dict(self.theta0)
        for f in range(len(frags)):
            theta.update(await self._fetch_fragment(f))
        self._load(theta)
        # NOTE: the round every fragment's run reached; a fragment whose run is ahead (its round
        # closed before the others' did, then the run stopped) is not pushed until the worker is there.
        self.round = min(state.round for state in frags.states)
        self.stats, self._unreported, self._remaining = RoundStats(), RoundStats(), None
        self.log("parameters.fetched", round=self.round, fragments=len(frags), sizes=frags.sizes())

    async def _fetch_fragment(self, f: int) -> Params:
        """Fragment f's run's current θ and round (the fragment's bookkeeping takes them)."""
        assert self._frags is not None
        fetched = await self.bridge.fetch_parameters(f"params/current-f{f}.safetensors", fragment=f)
        part = load_params(fetched.path)
        self._frags.reset(f, part, fetched.round)
        self._frag_samples[f] = 0
        return part

    def _last_round(self) -> bool:
        return self.round + 1 >= self.config.rounds

    async def _stream_step(self) -> bool:
        """After a batch: apply the fragment updates that came, push the fragments now due (their
        points f·H/F of the round, H known once the scheduler named the sync point)."""
        assert self._frags is not None
        if not await self._apply_fragments(wait=False):
            return False
        if self._remaining is None or self._remaining == 0:  # no sync point yet, or it is now (_sync)
            return True
        points = push_points(self.stats.batches + self._remaining, len(self._frags))
        last = self._last_round()
        for f in due(points, self.stats.batches, at_sync_point=False, last_round=last, pushed=self._frag_pushed):
            if not await self._push_fragment(f):
                return False
        return True

    async def _sync_fragments(self) -> bool:
        """The round's sync point: push every fragment not pushed yet; in the run's last round wait
        for every fragment's update and end at the parameter server's θ."""
        assert self._frags is not None
        r, last = self.round, self._last_round()
        points = push_points(max(1, self.stats.batches), len(self._frags))
        for f in due(points, self.stats.batches, at_sync_point=True, last_round=last, pushed=self._frag_pushed):
            if not await self._push_fragment(f):
                return False
        self._stream_rounds.setdefault(r, StreamRound()).stats = self.stats
        await self.bridge.report_progress(ProgressKind.UPDATE_SENT, r)
        self.round, self.stats, self._unreported, self._remaining = r + 1, RoundStats(), RoundStats(), None
        self._frag_pushed = set()
        if not last:
            return await self._finish_stream_rounds()
        await self._apply_fragments(wait=True, report=False)
        # NOTE: nothing trained since the pushes, so the model is the synchronized θ; it is loaded
        # as such, not as pushed + (θ_{r+1} − pushed), which may round differently.
        self._load(self._frags.synced())
        return await self._finish_stream_rounds()

    async def _push_fragment(self, f: int) -> bool:
        """Push fragment f's Δ in the background (once its update of the round before is applied)."""
        assert self._frags is not None
        if f in self._frag_tasks and not await self._apply_fragments(wait=True, only=f):
            return False
        self._frag_pushed.add(f)
        state = self._frags.states[f]
        samples = self._frag_samples[f]
        if samples == 0 or state.round > self.round:  # nothing trained since its last push / its run is ahead
            return True
        local = snapshot(self._plain_model)
        fragment_round, delta = self._frags.push(f, local)
        if self._frag_feedback is not None:
            delta = self._frag_feedback[f].compensate(delta)
        # the fragment trains on from its proxy point (eager), except in the run's last round, which blocks
        point = None if self._last_round() else self._frags.proxy_point(f, delta)
        if point is not None:
            local.update(point)
            self._load(local)
        rel = f"{self._handoff_folder()}/delta-f{f}-{fragment_round:05d}.safetensors"
        digest = self._handoff(f).write(delta, self.bridge.work_dir / rel)
        self._frag_samples[f] = 0
        self._stream_rounds.setdefault(self.round, StreamRound()).out.add(f)
        task = asyncio.create_task(self._exchange_fragment(f, fragment_round, float(samples), rel, delta, digest))
        self._frag_tasks[f] = (self.round, task)
        return True

    async def _exchange_fragment(
        self, f: int, r: int, weight: float, rel: str, delta: Params, digest: str = ""
    ) -> FragmentExchange:
        """Push fragment f's Δ of its round r to its run and pull the round's update (``digest``: Δ's file's)."""
        feedback = self._frag_feedback[f] if self._frag_feedback is not None else None
        try:
            sent = await self.bridge.send_update(rel, r, weight, fragment=f, digest=digest)
            bytes_sent, send_seconds = sent.bytes_sent, sent.seconds
        except BridgeError as exc:
            if exc.reason == BridgeReason.ALREADY_COMMITTED:
                bytes_sent, send_seconds = 0, 0.0
            elif exc.reason in ROUND_MISSED:
                self.log("fragment.missed", fragment=f, round=r, reason=str(exc.reason), error=exc.message)
                return 0, 0.0, None
            else:
                raise
        finally:
            (self.bridge.work_dir / rel).unlink(missing_ok=True)
        if feedback is not None:
            feedback.sent(delta)
        try:
            received = await self.bridge.receive_update(
                r,
                path=f"{self._handoff_folder()}/f{f}-round-{r}.safetensors",
                timeout_seconds=self.config.receive_timeout,
                fragment=f,
                reuse_files=True,
            )
        except BridgeError as exc:
            if exc.reason not in UPDATE_MISSED and exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            self.log("fragment.update_missed", fragment=f, round=r, reason=str(exc.reason), error=exc.message)
            return bytes_sent, send_seconds, None
        return bytes_sent, send_seconds, received

    async def _apply_fragments(self, *, wait: bool, only: int | None = None, report: bool = True) -> bool:
        """Apply the fragment updates that came (``wait``: wait for them; ``only``: just fragment
        ``only``'s): each rebases its own tensors of the local θ; then (``report``) report the rounds
        now synced. False when the scheduler says DONE."""
        assert self._frags is not None
        for f in sorted(self._frag_tasks):
            round_index, task = self._frag_tasks[f]
            if (only is not None and f != only) or not (wait or task.done()):
                continue
            del self._frag_tasks[f]
            bytes_sent, send_seconds, received = await task
            record = self._stream_rounds[round_index]
            record.out.discard(f)
            record.bytes_sent += bytes_sent
            record.send_seconds += send_seconds
            if received is None:
                record.missed = True
                local = snapshot(self._plain_model)
                local.update(await self._fetch_fragment(f))  # this fragment's unsynced progress is dropped
                self._load(local)
                continue
            update, pushed = load_params(received.path), self._frags.states[f].pushed
            self._load(self._frags.arrived(f, update, snapshot(self._plain_model), contributors=received.contributors))
            if pushed is not None:
                state = self._frags.states[f]
                self.log(
                    "fragment.rebased", fragment=f, round=state.round - 1, proxy_miss=miss(state.synced, pushed, update)
                )
            if self.config.keep_updates:
                save_params(self._frags.synced(), self.bridge.work_dir / SYNCED)
            else:
                received.path.unlink(missing_ok=True)
            record.bytes_received += received.bytes_received
            record.receive_seconds += received.seconds
            record.contributors = min(record.contributors or received.contributors, received.contributors)
        return await self._finish_stream_rounds() if report else True

    async def _finish_stream_rounds(self) -> bool:
        """Report each round, oldest first, once its sync point passed and every fragment pushed in
        it is synced: METRICS, then UPDATE_RECEIVED (METRICS with update_missed when a fragment's
        update did not come). False when the scheduler says DONE."""
        for r in sorted(self._stream_rounds):
            record = self._stream_rounds[r]
            if record.stats is None or record.out:
                break
            del self._stream_rounds[r]
            stats = record.stats
            metrics = {
                "loss": stats.mean_loss,
                "samples": stats.samples,
                "batches": stats.batches,
                "compute_seconds": stats.compute_seconds,
                "data_wait_seconds": stats.data_wait_seconds,
                "slices_skipped": stats.slices_skipped,
                "train_seconds": time.perf_counter() - stats.started,
                "bytes_sent": record.bytes_sent,
                "send_seconds": record.send_seconds,
            }
            if record.missed:
                metrics["update_missed"] = 1.0
                await self.bridge.report_progress(ProgressKind.METRICS, r, metrics=metrics)
                continue
            await self.bridge.report_progress(ProgressKind.METRICS, r, metrics=metrics)
            self.log("round.done", round=r, loss=stats.mean_loss, samples=stats.samples)
            directive = await self.bridge.report_progress(
                ProgressKind.UPDATE_RECEIVED,
                r,
                metrics={
                    "bytes_received": record.bytes_received,
                    "receive_seconds": record.receive_seconds,
                    "contributors": record.contributors or 0,
                },
            )
            if directive.kind == DirectiveKind.DONE:
                return False
        return True


def resolve_mixed_precision(requested: str) -> str:
    """``auto``: bf16 on a GPU that has it, fp16 on another GPU, no on a CPU; anything else as given."""
    if requested != "auto":
        return requested
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
