"""The ParameterServer's logic (no gRPC): runs, pushes, round closing, served payloads.

A run is keyed by the DiLoCo run id (``run_id`` of the proto messages). A round lives in
memory: each push is staged whole in its own buffer (:mod:`.spool`) until it commits, then
folded into the run's fp32 accumulator (:mod:`.aggregate`); the round closes from memory and
its update is served from memory. θ and the momentum buffer are the run's checkpoint on disk
(:mod:`.store`), written once per round after the update is served, by a background task.
Every big buffer is taken from one :class:`~tendril.paramserver.memory.MemoryBudget`, and a
push is admitted (at its header, before the server accepts it) only when its payload fits.
Blocking work (verifying, folding, the outer step, writing the checkpoint) runs in threads so
the event loop keeps receiving other pushes.

Every change of a run's round state (opened, a commit, a round closing, the next round, the
run finished or closed) is published to the run's watchers (:meth:`ParameterServerCore.watch_round`),
each through its own bounded queue (:mod:`tendril.core.fanout`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import enum
import functools
import itertools
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypeVar

from tendril.core import codecs, metrics, tensorfile
from tendril.core.codecs import CODECS
from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout, Overflow
from tendril.core.logs import get_logger
from tendril.core.streaming import DEFAULT_DIGEST, Digest, StreamInfo, digest_file
from tendril.core.tensorfile import Layout
from tendril.paramserver.aggregate import (
    Accumulator,
    bad_indices,
    close_round,
    convert,
    digest,
    first_non_finite,
    new_payload,
    write_checkpoint,
    write_fp32,
)
from tendril.paramserver.errors import ParameterServerError, ParamserverReason, StreamReason
from tendril.paramserver.memory import MemoryBudget
from tendril.paramserver.rounds import Phase, RoundMachine, RunConfig
from tendril.paramserver.spool import Spool
from tendril.paramserver.store import RunStore, SavedState, UpdateRecord, parameter_error, saved_runs

_T = TypeVar("_T")

log = get_logger("tendril.paramserver")

KEEP_UPDATES = 4  # rounds whose update a run keeps at most (in memory, while the budget has room)
CLOSE_ALLOWANCE_SECONDS = 60.0  # added to the round timeout when a pull waits "the run's round timeout"
WATCH_QUEUE = 1024  # changes a WatchRound watcher may fall behind before it is cut off
# NOTE: the memory budget when none is configured: each run's accumulator (its model in fp32)
# plus two models of the largest run: two fp32 pushes staged at once (four bf16, eight int8),
# so that the next push is received while the one before is verified and folded into the
# accumulator (each keeps a core busy), or, at a round's close, its update. Measured with
# `python -m bench --only sync,paramserver` (idle 2-core machine): one model instead of two made
# round sync at 400 MB fp32 3.34 s instead of 2.57 s, for a peak of 621 MiB instead of 854 MiB
# with 8 pushers of 256 MiB, both under the 2.5 × model + 300 MiB (940 MiB) it is held to
# (with pooled buffers, see memory.py: 884-900 MiB, the pushes 2.0 s instead of 5.75 s).
SHARED_MODELS = 2


def _background() -> None:
    """Lower the calling thread's scheduling priority (Linux: a thread is a task of its own)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


# NOTE: checkpoints are written on a thread of lower priority: on a machine of few cores the
# round's pulls (and the workers' next round) go first; the disk write only has to end before
# the next round closes.
_CHECKPOINTS = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint", initializer=_background)


@dataclasses.dataclass(frozen=True)
class Served:
    """A payload to stream out, with what its header says: a file (``path``) or bytes in memory (``view``)."""

    layout: Layout
    digest: Digest
    round: int
    contributors: int = 0
    weight: float = 0.0
    path: Path | None = None
    view: memoryview | None = None  # a complete SafeTensors payload: header + data

    async def ready(self, upto: int) -> None:
        """Return once bytes [0, upto) are final.

        Served payloads are complete before they are served (their digest goes in the stream
        header, before the first byte), so this returns at once.
        """
        return None


@dataclasses.dataclass(frozen=True)
class RoundView:
    """What GetRound answers."""

    run_id: str
    round: int
    closed: bool
    committed: list[str]
    known_workers: list[str]  # the workers named by the run's scheduler, else those that pushed so far
    pushes_in_flight: int


class RunState(enum.Enum):
    """Where a run is as a whole (``tendril.paramserver.v1.RunState``)."""

    OPEN = "open"
    FINISHED = "finished"  # its last round closed and that round's update is served
    CLOSED = "closed"  # CloseJob


@dataclasses.dataclass(frozen=True)
class RoundStatus:
    """What WatchRound sends: the state of a run's current round at one moment."""

    run_id: str
    round: int
    closed: bool  # the round takes no more pushes (being aggregated, or the run is over)
    committed: tuple[str, ...]
    expected_workers: int  # how many a round expects (the named ones, else OpenJob's count)
    rounds: int
    run_state: RunState
    expected_names: tuple[str, ...] = ()  # the workers named by the run's scheduler; empty: by count

    @property
    def ended(self) -> bool:
        """Nothing changes after this status: a watch ends with it."""
        return self.run_state is not RunState.OPEN


@dataclasses.dataclass(frozen=True)
class _Unsaved:
    """A closed round whose θ and momentum are not on disk yet (the checkpoint's input)."""

    round: int
    acc: Accumulator  # the momentum buffer, after the outer step
    update: Served  # the update as applied (the run's codec)
    finished: bool


@dataclasses.dataclass
class _ClosedRound:
    """What a run remembers of a round it closed (in this process)."""

    record: UpdateRecord
    codec: str  # the codec the update was applied in


class Run:
    """One run's state in memory."""

    def __init__(self, store: RunStore, state: SavedState, *, resumed: bool) -> None:
        self.store = store
        self.state = state  # the checkpoint on disk; changed through ParameterServerCore._save
        phase = Phase.FINISHED if state.finished else Phase.OPEN
        self.machine = RoundMachine(
            store.run_id, state.config, round=state.round, phase=phase, expected=frozenset(state.expected)
        )
        self.resumed = resumed
        self.pushes: dict[str, Spool] = {}
        self.param_pushes: dict[str, Spool] = {}
        self.known_workers: set[str] = set()
        self.changed = asyncio.Condition()
        self.closing: asyncio.Task[None] | None = None
        self.checkpoint: asyncio.Task[None] | None = None
        self.unsaved: _Unsaved | None = None  # a checkpoint that failed (OpenJob retries it)
        self.timer: asyncio.TimerHandle | None = None
        self.failure: ParameterServerError | None = None
        self.gone = False
        self.acc: Accumulator | None = None  # the open round's sum (from its first admitted push)
        self.fold_lock = asyncio.Lock()  # one fold at a time: the commit order is the fold order
        self.save_lock = asyncio.Lock()
        self.params_lock = asyncio.Lock()
        self.theta_layout: Layout | None = None  # θ's fp32 layout once the run has parameters
        self.closed_rounds: dict[int, _ClosedRound] = {}
        self.kept: dict[tuple[int, str], Served] = {}  # (round, codec) -> update in memory
        # The newest closed round's contributors that have not asked for its update yet: while
        # any is left, that update is not dropped to make room (see _keep).
        self.awaited: tuple[int, set[str]] = (-1, set())
        self.encode_locks: dict[tuple[int, str], asyncio.Lock] = {}
        self.lost: dict[str, float] = {}  # workers whose committed push of the open round was lost
        self.watchers: Fanout[RoundStatus] = Fanout()

    @property
    def run_id(self) -> str:
        return self.store.run_id

    def status(self) -> RoundStatus:
        machine = self.machine
        if self.state.closed:
            run_state = RunState.CLOSED
        elif machine.phase is Phase.FINISHED:
            run_state = RunState.FINISHED
        else:
            run_state = RunState.OPEN
        return RoundStatus(
            run_id=self.run_id,
            round=machine.round,
            closed=machine.phase is not Phase.OPEN,
            committed=tuple(sorted(machine.committed)),
            expected_workers=machine.expected_count,
            rounds=self.state.config.rounds,
            run_state=run_state,
            expected_names=tuple(sorted(machine.expected)),
        )

    def publish(self) -> None:
        """Tell the watchers the round state now (never waits: a slow watcher is cut off)."""
        self.watchers.publish(self.status())

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class ParameterServerCore:
    """All runs of one ParameterServer, state under ``root`` (``<state_dir>/paramserver``).

    ``memory_budget``: bytes of big buffers (staged pushes, accumulators, updates) the server
    aims to hold; 0 means each run's accumulator + :data:`SHARED_MODELS` fp32 model of the largest.
    """

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.monotonic, memory_budget: int = 0) -> None:
        self.root = root
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self._digest_cache: dict[tuple[str, int, int], Digest] = {}
        self.memory_budget = memory_budget
        self.budget = MemoryBudget(memory_budget)
        self._finishing_order = itertools.count()
        self._opening = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    async def load_saved(self) -> None:
        """Pick up every run saved under ``root`` (a restarted server resumes at the last closed round)."""
        for run_id in saved_runs(self.root):
            store = RunStore(self.root, run_id)
            try:
                state = store.load()
                run = Run(store, state, resumed=True)
                await asyncio.to_thread(self._restore, run)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("paramserver.load_failed", run_id=run_id, error=str(exc))
                continue
            self.runs[run_id] = run
            log.info(
                "paramserver.resumed", run_id=run_id, round=state.round, finished=state.finished, lost=sorted(run.lost)
            )
        self._update_limit()

    def _restore(self, run: Run) -> None:
        run.store.sweep(run.state)
        if run.state.theta_round is not None:
            run.theta_layout = tensorfile.read_layout(run.store.theta(run.state.theta_round))
        if run.machine.phase is Phase.OPEN:
            # NOTE: pushes live in memory until their round closes: those the records say were
            # committed are gone with the old process. Their workers are told (PUSH_LOST) when
            # they pull the round, and push again.
            run.lost = run.store.committed_workers(run.state.round)
            run.known_workers.update(run.lost)

    async def stop(self) -> None:
        """Let rounds being closed and saved finish (their results must reach the disk)."""
        for run in list(self.runs.values()):
            if run.timer:
                run.timer.cancel()
            await self._settle(run)
            for spool in [*run.pushes.values(), *run.param_pushes.values()]:
                spool.discard()
        self.budget.trim()

    @staticmethod
    async def _settle(run: Run) -> None:
        """Wait until no round of ``run`` is being closed or saved (whatever the outcome)."""
        while True:
            task = run.closing
            if task is None and run.checkpoint is not None and not run.checkpoint.done():
                task = run.checkpoint
            if task is None:
                return
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    def _update_limit(self, *, offered: int = 0) -> None:
        """The budget: configured, else every run's accumulator + SHARED_MODELS of the largest (or of θ0 offered)."""
        if self.memory_budget:
            self.budget.limit = self.memory_budget
            return
        # (a model: θ's fp32 payload, header included, as an fp32 push or update of it is)
        models = [run.theta_layout.total_bytes for run in self.runs.values() if run.theta_layout is not None]
        self.budget.limit = sum(models) + SHARED_MODELS * max([*models, offered], default=0)

    async def _save(self, run: Run, **changes: Any) -> None:
        """Save the run's state with ``changes`` (one save at a time: the newest state is the last written)."""
        async with run.save_lock:
            state = dataclasses.replace(run.state, **changes)
            await asyncio.to_thread(run.store.save, state)
            run.state = state

    # -- jobs -------------------------------------------------------------------------------------

    async def open_job(self, run_id: str, config: RunConfig, *, owner_id: str = "") -> tuple[int, bool]:
        """Start (or resume, or reconfigure) a run; returns (current round, resumed from disk).

        ``owner_id``: the scheduler that owns the run (empty keeps the owner it has); the workers
        it named (:meth:`set_expected`) stay named.
        """
        run = self.runs.get(run_id)
        if run is not None:
            await self._save_opened(run, config, owner_id)
        else:
            # NOTE: a run becomes visible (GetRound, pushes, watches) only once its state is on
            # disk: a server that dies in between must never have shown it OPEN, and a save that
            # fails leaves no run behind. One such opening at a time, so that two OpenJobs of a
            # new run make one Run.
            async with self._opening:
                run = self.runs.get(run_id)
                if run is None:
                    store = RunStore(self.root, run_id)
                    if store.exists():
                        run = Run(store, store.load(), resumed=True)
                        await asyncio.to_thread(self._restore, run)
                    else:
                        run = Run(store, SavedState(config=config), resumed=False)
                await self._save_opened(run, config, owner_id)
                self.runs[run_id] = run
        self._update_limit()
        log.info("paramserver.open_job", run_id=run_id, round=run.machine.round, resumed=run.resumed, **vars(config))
        run.publish()
        self._after_commit(run)
        return run.machine.round, run.resumed

    async def _save_opened(self, run: Run, config: RunConfig, owner_id: str) -> None:
        """Save ``run`` as opened with ``config`` (a closed round that never reached the disk first)."""
        if run.unsaved is not None:
            # The last closed round never reached the disk: save it before anything else.
            await self._checkpoint(run, run.unsaved)
            if run.unsaved is not None and run.failure is not None:
                raise run.failure
        run.machine.config = config
        run.failure = None
        await self._save(run, config=config, closed=False, owner_id=owner_id or run.state.owner_id)

    async def set_expected(self, run_id: str, caller: str, workers: list[str]) -> RoundStatus:
        """Name the workers the run expects each round (empty: back to OpenJob's count); owner only.

        A round then closes as soon as every named worker committed: a worker the scheduler
        declared lost is no longer waited for, one that joined is. The names are saved with the
        run's state.
        """
        run = self._run(run_id)
        owner = run.state.owner_id
        if not owner or caller != owner:
            why = "it was opened without an owner_id" if not owner else f"its owner is {owner!r}"
            raise ParameterServerError(
                ErrorKind.PERMISSION_DENIED,
                f"only the scheduler that owns run {run_id} may name its expected workers; {why}, the caller is "
                f"{caller!r}",
                reason=ParamserverReason.NOT_RUN_OWNER,
                metadata={"run_id": run_id},
            )
        names = tuple(sorted(set(workers)))
        if names != run.state.expected:
            await self._save(run, expected=names)
            run.machine.expected = frozenset(names)
            log.info(
                "paramserver.expected_workers",
                run_id=run_id,
                round=run.machine.round,
                workers=list(names),
                committed=sorted(run.machine.committed),
            )
            run.publish()
            self._after_commit(run)  # the round may be complete now
        return run.status()

    async def close_job(self, run_id: str, *, purge: bool) -> None:
        """Stop taking pushes for a run (pulls of finished rounds and θ stay served unless purged)."""
        run = self.runs.get(run_id)
        if run is None:
            store = RunStore(self.root, run_id)
            if purge and store.exists():
                await asyncio.to_thread(store.purge)
                return
            raise self._not_open(run_id)
        if run.timer:
            run.timer.cancel()
            run.timer = None
        await self._settle(run)
        closed = ParameterServerError(
            ErrorKind.FAILED_PRECONDITION, f"run {run_id} was closed (CloseJob)", reason=ParamserverReason.RUN_CLOSED
        )
        for spool in [*run.pushes.values(), *run.param_pushes.values()]:
            spool.stale = closed
            spool.discard()
        run.pushes.clear()
        run.param_pushes.clear()
        if purge:
            run.state = dataclasses.replace(run.state, closed=True)
            for round, codec in list(run.kept):
                self._forget_update(run, round, codec)
            run.acc = None
            await asyncio.to_thread(run.store.purge)
            run.gone = True
            del self.runs[run_id]
            self._update_limit()
        else:
            await self._save(run, closed=True)
        run.publish()  # CLOSED: its watchers read it and end (a purged run's too)
        await run.notify()
        log.info("paramserver.close_job", run_id=run_id, purge=purge, round=run.machine.round)

    async def purge_expired(self, max_age_seconds: float, *, now: float | None = None) -> list[str]:
        """Purge the runs that are over (closed, or finished) and whose state last changed more
        than ``max_age_seconds`` ago (``paramserver.keep_closed_runs_days``); returns their ids.

        Open runs are kept however old: their aggregate job may come back for them.
        """
        now = time.time() if now is None else now
        expired = []
        for run_id, run in list(self.runs.items()):
            if not (run.state.closed or run.machine.phase is Phase.FINISHED) or run.closing is not None:
                continue
            try:
                changed = run.store.state_path.stat().st_mtime
            except FileNotFoundError:
                continue
            if now - changed > max_age_seconds:
                await self.close_job(run_id, purge=True)
                expired.append(run_id)
        if expired:
            log.info("paramserver.runs_expired", runs=expired, max_age_seconds=max_age_seconds)
        return expired

    async def watch_round(self, run_id: str, *, name: str = "") -> AsyncGenerator[RoundStatus, None]:
        """The run's round state now, then each change, until the run finished or was closed.

        Raises the run's failure (AGGREGATION_FAILED) when closing a round fails, and
        :class:`~tendril.core.fanout.SubscriptionOverflow` when the watcher fell
        :data:`WATCH_QUEUE` changes behind.
        """
        run = self._run(run_id)
        if run.failure:
            raise run.failure
        # NOTE: subscribed before the first status is taken, so no change can fall between them.
        sub = run.watchers.subscribe(maxsize=WATCH_QUEUE, overflow=Overflow.CLOSE, name=name or run_id)
        try:
            status = run.status()
            yield status
            if status.ended:
                return
            async for status in sub:
                if run.failure:
                    raise run.failure
                yield status
                if status.ended:
                    return
        finally:
            run.watchers.unsubscribe(sub)

    def get_round(self, run_id: str) -> RoundView:
        run = self._run(run_id)
        if run.failure:
            raise run.failure
        machine = run.machine
        return RoundView(
            run_id=run_id,
            round=machine.round,
            closed=machine.phase is not Phase.OPEN,
            committed=sorted(machine.committed),
            known_workers=sorted(machine.expected or run.known_workers),
            pushes_in_flight=sum(1 for s in run.pushes.values() if s.stale is None),
        )

    # -- pushes of updates -------------------------------------------------------------------------

    def _check_push(self, run: Run, info: StreamInfo) -> Layout:
        theta = run.theta_layout
        if theta is None:
            raise parameter_error(run.run_id)
        run.machine.check_push(info.round, info.worker_id)
        if not math.isfinite(info.weight) or info.weight <= 0:
            raise ParameterServerError(
                ErrorKind.INVALID_ARGUMENT,
                f"weight must be a finite number > 0 (the samples behind the update), got {info.weight}",
                reason=ParamserverReason.BAD_WEIGHT,
            )
        _check_shapes(info.layout.shapes(), theta.shapes())
        return theta

    async def begin_push(self, info: StreamInfo) -> Spool:
        """Check a PushUpdate header and return its spool (a new one, or the one to resume).

        A new push waits here, before the server accepts it, until its payload fits the
        memory budget (with the round's accumulator when it is the round's first).
        """
        run = self._open_run(info.run_id)
        theta = self._check_push(run, info)
        known = await self._known(run.pushes, info)
        if known is not None:
            return known

        def need() -> int:
            current = self.runs.get(info.run_id)
            acc = 4 * theta.numel if current is not None and current.acc is None else 0
            return info.total_bytes + acc

        await self.budget.wait_for_room(need)
        # Everything may have changed while this push waited.
        run = self._open_run(info.run_id)
        theta = self._check_push(run, info)
        known = await self._known(run.pushes, info)
        if known is not None:
            return known
        if run.acc is None:
            run.acc = Accumulator(theta, memoryview(self.budget.allocate(4 * theta.numel)))
        return self._new_spool(run, run.pushes, info, "push")

    async def _known(self, table: dict[str, Spool], info: StreamInfo) -> Spool | None:
        """The spool of a stream being resumed, or None for a new stream."""
        known = table.get(info.stream_id)
        if known is None or known.stale is not None:
            return None
        if not known.same_payload(info):
            raise ParameterServerError(
                ErrorKind.INVALID_ARGUMENT,
                f"stream_id {info.stream_id} is already used for another payload; use a fresh id",
                reason=ParamserverReason.STREAM_ID_REUSED,
            )
        self.budget.keep(known.key)
        await known.take_over()
        return known

    def _predecessor(self, nbytes: int) -> Spool | None:
        """The push being folded whose buffer a new push of ``nbytes`` may be received into, when the
        budget has no room for a buffer of its own (the one that began committing first)."""
        budget = self.budget
        if not budget.limit or budget.held + nbytes <= budget.limit:
            return None
        committing = [
            spool
            for run in self.runs.values()
            for spool in run.pushes.values()
            if spool.finishing and spool.successor is None and spool.stale is None
            if budget.serves(spool.nbytes, nbytes)
        ]
        return min(committing, key=lambda spool: spool.finishing_order, default=None)

    def _new_spool(self, run: Run, table: dict[str, Spool], info: StreamInfo, kind: str) -> Spool:
        nbytes = info.total_bytes
        before = self._predecessor(nbytes) if kind == "push" else None
        gate = None
        if before is not None:
            # NOTE: the buffer of the push being folded, written behind its fold: no page given
            # back to the kernel and faulted in (zeroed) again, which cost a 400 MB round 0.04-0.1
            # CPU-seconds on the round's last push (`perf record` of the sync bench). That push
            # no longer frees memory: it leaves the budget's count of pushes finishing.
            view, gate = before.hand_over(nbytes)
            self.budget.finished(before.nbytes)
        else:
            view = memoryview(self.budget.allocate(nbytes))
        self.budget.staging += nbytes
        key = (kind, run.run_id, info.stream_id)

        def done() -> None:
            self.budget.staging -= nbytes
            if spool.finishing and spool.successor is None:
                self.budget.finished(nbytes)
            self.budget.keep(key)
            self.budget.released()

        budget = self.budget

        def release_pages(view: memoryview, start: int, end: int) -> None:
            # NOTE: only while more is held than the limit (a push admitted while this one is
            # folded, see MemoryBudget.finish): otherwise the buffer goes back to the pool whole,
            # and the next push reuses its pages without faulting them in again.
            if budget.over:
                budget.release_pages(view, start, end)

        spool = Spool(info, view, done, key=key, table=table, release_pages=release_pages, gate=gate)
        spool.owner = asyncio.current_task()
        table[info.stream_id] = spool
        return spool

    async def commit_push(self, spool: Spool) -> int:
        """Count a completely received push in its round; returns the round's contributors so far."""
        info = spool.info
        run = self._open_run(info.run_id)
        self._finishing(spool)
        try:
            layout = await spool.finish()
            spool.give_back(0, layout.header_size)  # (checked: only the tensors are read from here on)
            # NOTE: a push whose values were all seen finite as they arrived (spool.FiniteWatch) is
            # not read through again; one that was not looked at, or held NaN/Inf, is (to name
            # the tensor).
            bad = None if spool.finite else await _on_payload(spool, lambda view: first_non_finite(view, layout))
            if bad is not None:
                raise ParameterServerError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"tensor {bad!r} of the update holds NaN or Inf; it was not counted (check the training run)",
                    reason=ParamserverReason.NON_FINITE_UPDATE,
                )
            wrong = await _on_payload(spool, lambda view: bad_indices(view, layout))
            if wrong is not None:
                raise ParameterServerError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"sparse tensor {wrong}; the update was not counted (encode it with tendril.core.codecs)",
                    reason=ParamserverReason.LAYOUT_MISMATCH,
                )
            if spool.stale is not None:
                raise spool.stale
            run.machine.check_push(info.round, info.worker_id)
        except ParameterServerError:
            self._drop(run.pushes, spool)
            raise
        except BaseException:
            if spool.successor is not None:
                # NOTE: (its call was cancelled) another push is received into its buffer as it is
                # folded: it cannot be kept for a retry of its own.
                self._drop(run.pushes, spool)
            raise
        # NOTE: shielded: once its fold has begun a push counts, even if its call is cancelled
        # meanwhile (half a fold could not be taken back out of the sum).
        return await asyncio.shield(self._fold(run, spool, layout))

    async def _fold(self, run: Run, spool: Spool, layout: Layout) -> int:
        info = spool.info
        async with run.fold_lock:
            try:
                if spool.stale is not None:
                    raise spool.stale
                if run.failure is not None:
                    raise run.failure
                # Re-check after the awaits: the round may have closed or the worker committed meanwhile.
                run.machine.check_push(info.round, info.worker_id)
            except ParameterServerError:
                self._drop(run.pushes, spool)
                raise
            if run.acc is None and run.theta_layout is not None:  # its round's sum was lost meanwhile
                run.acc = Accumulator(run.theta_layout, memoryview(self.budget.take(4 * run.theta_layout.numel)))
            acc = run.acc
            assert acc is not None
            try:
                await _on_payload(
                    spool, lambda view: acc.fold(info.worker_id, info.weight, view, layout, consumed=spool.give_back)
                )
            except Exception as exc:
                self._drop(run.pushes, spool)
                raise self._lose_round(run, f"adding the update of worker {info.worker_id} failed: {exc}") from exc
            self._drop(run.pushes, spool)
            # NOTE: recorded before it counts: a restart in between tells the worker its push
            # was lost (it was never acknowledged either), never the other way round.
            with contextlib.suppress(OSError):  # (only a restart's report of lost pushes needs it)
                await asyncio.to_thread(
                    run.store.mark_committed, info.round, info.worker_id, info.weight, info.stream_id
                )
            run.machine.commit(info.worker_id, info.weight, self.clock())
            run.lost.pop(info.worker_id, None)
            run.known_workers.add(info.worker_id)
        log.info(
            "paramserver.committed",
            run_id=run.run_id,
            round=info.round,
            worker_id=info.worker_id,
            weight=info.weight,
            codec=layout.codec,
            committed=len(run.machine.committed),
        )
        run.publish()
        self._after_commit(run)
        return len(run.machine.committed)

    def _finishing(self, spool: Spool) -> None:
        """A push received whole: it is verified and folded next, then its memory goes back."""
        self.budget.keep(spool.key)
        if not spool.finishing and spool.complete:
            spool.finishing = True
            spool.finishing_order = next(self._finishing_order)
            self.budget.finish(spool.nbytes)  # the next push may be admitted now

    def release(self, spool: Spool) -> None:
        """The call feeding ``spool`` ended (cut, or waiting for its commit)."""
        if spool.owner is not asyncio.current_task():
            return
        spool.owner = None
        if not spool.complete and spool.stale is None:
            # NOTE: a cut push keeps its bytes for a resume, until their room is needed by
            # another push: then it is dropped and its retry starts from 0.
            table = spool.table if spool.table is not None else {}
            self.budget.droppable(spool.key, spool.nbytes, lambda: self._drop(table, spool))

    def _drop(self, table: dict[str, Spool], spool: Spool) -> None:
        spool.discard()
        key = spool.info.stream_id
        if table.get(key) is spool:
            del table[key]

    def _lose_round(self, run: Run, why: str) -> ParameterServerError:
        """The open round's sum is spoiled: its commits are lost (their workers push again)."""
        lost = run.machine.forget_commits()
        run.lost.update(lost)
        run.acc = None
        run.failure = ParameterServerError(
            ErrorKind.INTERNAL,
            f"round {run.machine.round} of run {run.run_id} lost its committed updates ({', '.join(sorted(lost))}): "
            f"{why}; reopen the run (OpenJob), then those workers push again",
            reason=ParamserverReason.AGGREGATION_FAILED,
        )
        log.error("paramserver.round_lost", run_id=run.run_id, round=run.machine.round, lost=sorted(lost), error=why)
        run.publish()
        return run.failure

    # -- closing rounds -----------------------------------------------------------------------------

    def _after_commit(self, run: Run) -> None:
        """Close the round when due, else arm a timer for its quorum deadline."""
        if run.closing is not None or run.failure is not None or run.state.closed:
            return
        now = self.clock()
        if run.machine.close_due(now):
            if run.timer:
                run.timer.cancel()
                run.timer = None
            run.closing = asyncio.get_running_loop().create_task(self._close(run))
            return
        deadline = run.machine.deadline()
        if deadline is not None and run.timer is None:
            delay = max(0.0, deadline - now)

            def fire() -> None:
                run.timer = None
                self._after_commit(run)

            run.timer = asyncio.get_running_loop().call_later(delay, fire)

    async def _close(self, run: Run) -> None:
        machine, store = run.machine, run.store
        if run.checkpoint is not None and not run.checkpoint.done():  # θ and momentum must be on disk
            with contextlib.suppress(Exception):
                await asyncio.shield(run.checkpoint)
        if run.unsaved is not None:  # it failed: the run waits for OpenJob
            run.closing = None
            return
        async with run.fold_lock:  # no fold in progress, and none starts once the round is CLOSING
            round = machine.round
            first_commit_at = machine.first_commit_at  # the round's duration is measured from here
            contributions = machine.begin_close()
            acc = run.acc
        run.publish()
        # Pushes still in flight for this round can no longer count: their memory goes back now.
        late = ParameterServerError(
            ErrorKind.FAILED_PRECONDITION,
            f"round {round} of run {run.run_id} closed while this push was in flight; round {round + 1} is open: "
            f"pull round {round}'s update and push for round {round + 1}",
            reason=ParamserverReason.ROUND_CLOSED,
        )
        for spool in list(run.pushes.values()):
            spool.stale = late
            self._drop(run.pushes, spool)
        state, config = run.state, run.state.config
        theta_round = state.theta_round if state.theta_round is not None else round
        started = time.perf_counter()
        try:
            if acc is None or run.theta_layout is None:
                raise RuntimeError("the round has no accumulated updates")
            layout, header = new_payload([(t.name, t.shape) for t in run.theta_layout.tensors], config.codec)
            view = memoryview(self.budget.take(layout.total_bytes))
            await asyncio.to_thread(
                close_round,
                acc=acc,
                theta=store.theta(theta_round),
                momentum=store.momentum(theta_round) if state.has_momentum else None,
                lr=config.outer_lr,
                mu=config.outer_momentum,
                update=view,
                update_layout=layout,
                update_header=header,
            )
            payload_digest = await asyncio.to_thread(digest, view)
        except Exception as exc:
            log.error("paramserver.close_failed", run_id=run.run_id, round=round, exc_info=exc)
            why = f"computing the update of round {round} of run {run.run_id} failed: {exc}"
            if acc is not None and acc.spoiled:
                self._lose_round(run, why)
            else:
                machine.abort_close()
                run.failure = ParameterServerError(
                    ErrorKind.INTERNAL,
                    f"{why}; check the parameter server's disk and log, then reopen the run (OpenJob)",
                    reason=ParamserverReason.AGGREGATION_FAILED,
                )
            run.closing = None
            run.publish()  # its watchers end with the failure
            await run.notify()
            return
        served = Served(
            layout=layout,
            digest=payload_digest,
            round=round,
            contributors=len(acc.workers),
            weight=acc.weight,
            view=view.toreadonly(),
        )
        served_codec = codecs.get(config.codec).update_codec  # sparse runs: their updates are int8
        run.closed_rounds[round] = _ClosedRound(UpdateRecord(served.contributors, served.weight), served_codec)
        run.awaited = (round, set(acc.workers))
        self._keep(run, round, served_codec, served, applied=True)
        run.acc = None
        finished = bool(config.rounds) and round + 1 >= config.rounds
        machine.finish_close()
        # NOTE: from here on the round is closed and its update served; θ and the momentum
        # buffer reach the disk in the background (the next round's close waits for them), and
        # the pulls waiting for the update are woken whatever fails below, in `finally`.
        try:
            run.publish()
            log.info(
                "paramserver.round_closed",
                run_id=run.run_id,
                round=round,
                contributors=served.contributors,
                workers=[w for w, _ in contributions],
                weight=served.weight,
                seconds=round_to_ms(time.perf_counter() - started),
                finished=finished,
            )
            metrics.round_closed(None if first_commit_at is None else self.clock() - first_commit_at)
        except Exception as exc:  # telemetry only
            log.warning("paramserver.after_close_failed", run_id=run.run_id, round=round, error=repr(exc))
        finally:
            unsaved = _Unsaved(round, acc, served, finished)
            run.checkpoint = asyncio.get_running_loop().create_task(self._checkpoint(run, unsaved))
            run.closing = None
            await run.notify()

    async def _checkpoint(self, run: Run, unsaved: _Unsaved) -> None:
        """Write θ' = θ + û and the momentum buffer of a closed round, then point the state at them."""
        store = run.store
        nbytes = unsaved.acc.nbytes
        self.budget.checkpointing += nbytes
        try:
            theta_round = run.state.theta_round
            if theta_round is None:
                raise RuntimeError("the run has no parameters on disk")
            update = unsaved.update
            assert update.view is not None
            out_theta = store.theta(unsaved.round + 1)
            save = functools.partial(
                write_checkpoint,
                unsaved.acc,
                theta=store.theta(theta_round),
                update=update.view,
                update_layout=update.layout,
                out_theta=out_theta,
                out_momentum=store.momentum(unsaved.round + 1),
            )
            theta_digest = await asyncio.get_running_loop().run_in_executor(_CHECKPOINTS, save)
            await self._save(
                run,
                round=unsaved.round if unsaved.finished else unsaved.round + 1,
                finished=unsaved.finished,
                theta_round=unsaved.round + 1,
                has_momentum=True,
            )
            run.unsaved = None
            with contextlib.suppress(OSError):
                self._remember_digest(out_theta, theta_digest)
        except Exception as exc:
            log.error("paramserver.checkpoint_failed", run_id=run.run_id, round=unsaved.round, exc_info=exc)
            run.unsaved = unsaved
            run.failure = ParameterServerError(
                ErrorKind.INTERNAL,
                f"saving θ after round {unsaved.round} of run {run.run_id} failed: {exc}; check the parameter "
                "server's disk and log, then reopen the run (OpenJob)",
                reason=ParamserverReason.AGGREGATION_FAILED,
            )
            run.publish()
            await run.notify()
            return
        finally:
            # NOTE: the accumulator and the update are let go of before the budget says the checkpoint
            # ended: a push waiting for room is admitted once nothing is being written, and found
            # them still held (a push of the next round sent right after the pulls took the budget
            # a model over).
            save = unsaved = update = None  # type: ignore[assignment]
            self.budget.checkpointing -= nbytes
            self.budget.released()
        log.info("paramserver.saved", run_id=run.run_id, round=run.state.round, theta_round=run.state.theta_round)
        try:
            await asyncio.to_thread(store.sweep, run.state)
        except Exception as exc:  # left-overs only cost disk; the next sweep retries
            log.warning("paramserver.sweep_failed", run_id=run.run_id, error=repr(exc))

    # -- θ0 ------------------------------------------------------------------------------------------

    async def begin_parameters(self, info: StreamInfo) -> Spool | None:
        """Spool for a θ0 offer, or None when the run already has parameters (the offer loses)."""
        run = self._open_run(info.run_id)
        if run.theta_layout is not None:
            return None
        try:
            tensorfile.float_shapes(info.layout)
        except tensorfile.TensorFileError as exc:
            # NOTE: a header read from the wire never gets here (info_from_header already refuses
            # a dtype that is not its codec's, with BAD_HEADER); this keeps the core's own answer
            # the same status, not an unmapped error (INTERNAL), for any other caller.
            raise ParameterServerError(
                ErrorKind.INVALID_ARGUMENT, f"θ0 must hold floating tensors: {exc}", reason=StreamReason.BAD_HEADER
            ) from exc
        known = await self._known(run.param_pushes, info)
        if known is not None:
            return known
        self._update_limit(offered=4 * info.layout.numel + info.layout.header_size)
        await self.budget.wait_for_room(lambda: info.total_bytes)
        run = self._open_run(info.run_id)
        if run.theta_layout is not None:  # another offer won while this one waited: no bytes needed
            return None
        known = await self._known(run.param_pushes, info)
        if known is not None:
            return known
        return self._new_spool(run, run.param_pushes, info, "params")

    async def commit_parameters(self, spool: Spool) -> tuple[bool, int]:
        """Make a complete θ0 offer the run's parameters unless another won; (accepted, round)."""
        run = self._open_run(spool.info.run_id)
        self._finishing(spool)
        try:
            layout = await spool.finish()
            bad = await _on_payload(spool, lambda view: first_non_finite(view, layout))
            if bad is not None:
                raise ParameterServerError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"tensor {bad!r} of θ0 holds NaN or Inf",
                    reason=ParamserverReason.NON_FINITE_PARAMETERS,
                )
            async with run.params_lock:
                if run.theta_layout is not None:
                    return False, run.machine.round
                round = run.machine.round
                theta = await _on_payload(spool, lambda view: write_fp32(run.store.theta(round), view, layout))
                run.theta_layout = theta
                await self._save(run, theta_round=round, has_momentum=False)
            self._update_limit()
            log.info("paramserver.parameters", run_id=run.run_id, round=round, tensors=len(layout.tensors))
            return True, round
        finally:
            self._drop(run.param_pushes, spool)

    # -- served payloads ------------------------------------------------------------------------------

    async def update_payload(
        self, run_id: str, round: int, codec: str, timeout: float | None, *, worker_id: str = ""
    ) -> Served:
        """The outer update of ``round`` in ``codec`` (empty: the run's), waiting for the round to close
        (``timeout`` seconds at most; None: the run's round timeout + CLOSE_ALLOWANCE_SECONDS, or
        no bound without one; 0: not at all).

        ``worker_id`` (the puller): a worker whose committed push of the open round was lost
        (a restart) is told so (PUSH_LOST) instead of waiting for a round that may not close.
        """
        run = self._run(run_id)
        if codec and codec not in CODECS:
            raise ParameterServerError(
                ErrorKind.INVALID_ARGUMENT, f"unknown codec {codec!r}", reason=StreamReason.BAD_CODEC
            )
        machine = run.machine
        next_soon = machine.phase is Phase.CLOSING and round == machine.round + 1
        if round > machine.round and not next_soon:
            raise ParameterServerError(
                ErrorKind.FAILED_PRECONDITION,
                f"round {round} of run {run_id} is not open yet; round {machine.round} is open",
                reason=ParamserverReason.ROUND_NOT_OPEN,
            )
        if worker_id and worker_id in run.lost and round == machine.round and machine.phase is Phase.OPEN:
            raise ParameterServerError(
                ErrorKind.FAILED_PRECONDITION,
                f"the update worker {worker_id} committed for round {round} of run {run_id} was lost (the "
                f"parameter server restarted before the round closed): push it again for round {round}",
                reason=ParamserverReason.PUSH_LOST,
                metadata={"run_id": run_id},
            )
        if round not in run.closed_rounds:
            await self._wait_closed(run, round, timeout)
        closed = run.closed_rounds[round]
        applied = run.kept.get((round, closed.codec))
        if applied is None:
            raise self._update_gone(run, round)
        if run.awaited[0] == round:
            # (from here the pull holds the update's view: dropping it would not cut the pull)
            run.awaited[1].discard(worker_id)
        codec = codecs.get(codec).update_codec if codec else closed.codec
        if codec == closed.codec:
            self.budget.touch(_update_key(run, round, codec))
            return applied
        lock = run.encode_locks.setdefault((round, codec), asyncio.Lock())
        async with lock:
            served = run.kept.get((round, codec))
            if served is None:
                layout, header = new_payload([(t.name, t.shape) for t in applied.layout.tensors], codec)
                # NOTE: allocated without making room: room would be made by dropping the very
                # update this one is encoded from. It is dropped first when a push needs room.
                view = memoryview(self.budget.allocate(layout.total_bytes))
                assert applied.view is not None
                await asyncio.to_thread(convert, applied.view, applied.layout, view, layout, header)
                payload_digest = await asyncio.to_thread(digest, view)
                served = dataclasses.replace(applied, layout=layout, digest=payload_digest, view=view.toreadonly())
                self._keep(run, round, codec, served, applied=False)
        run.encode_locks.pop((round, codec), None)
        self.budget.touch(_update_key(run, round, codec))
        return served

    def _keep(self, run: Run, round: int, codec: str, served: Served, *, applied: bool) -> None:
        """Keep an update in memory (while the budget has room, and for the last KEEP_UPDATES rounds).

        The update as applied (the run's codec) is dropped after everything else: the others
        are re-encoded from it. The newest round's update as applied is not dropped at all while
        a worker that contributed to the round has not asked for it yet.
        """
        run.kept[(round, codec)] = served

        def drop() -> None:
            run.kept.pop((round, codec), None)

        # NOTE: without the pin a push of the next round (from the parameter server's own host's
        # worker, with overlapped or streaming sync) took the room of an update that workers
        # behind slower links had not begun to pull; they were told UPDATE_GONE and had to fetch
        # θ again (seen in the lab at 100 Mbit/s with streaming sync).
        def pinned() -> bool:
            return applied and run.awaited[0] == round and bool(run.awaited[1])

        self.budget.droppable(
            _update_key(run, round, codec), served.layout.total_bytes, drop, last=applied, pinned=pinned
        )
        rounds = sorted({r for r, _ in run.kept})
        for old in rounds[:-KEEP_UPDATES]:
            for r, c in [key for key in run.kept if key[0] == old]:
                self._forget_update(run, r, c)

    def _forget_update(self, run: Run, round: int, codec: str) -> None:
        run.kept.pop((round, codec), None)
        self.budget.keep(_update_key(run, round, codec))

    def _update_gone(self, run: Run, round: int) -> ParameterServerError:
        return ParameterServerError(
            ErrorKind.FAILED_PRECONDITION,
            f"the update of round {round} of run {run.run_id} is no longer kept (updates stay in memory for the "
            f"last {KEEP_UPDATES} rounds while there is room, and not across a restart): pull the current "
            "parameters instead (PullParameters)",
            reason=ParamserverReason.UPDATE_GONE,
        )

    async def _wait_closed(self, run: Run, round: int, timeout: float | None) -> None:
        if round < run.machine.round or (run.machine.phase is Phase.FINISHED and round == run.machine.round):
            raise self._update_gone(run, round)
        config = run.state.config
        wait = timeout
        if wait is None and config.round_timeout_seconds:
            wait = config.round_timeout_seconds + CLOSE_ALLOWANCE_SECONDS

        def ready() -> bool:
            return round in run.closed_rounds or run.failure is not None or run.gone or run.state.closed

        try:
            async with run.changed:
                await asyncio.wait_for(run.changed.wait_for(ready), timeout=wait)
        except TimeoutError:
            if not ready():  # (else it closed just as the wait ran out)
                machine = run.machine
                raise ParameterServerError(
                    ErrorKind.DEADLINE_EXCEEDED,
                    f"round {round} of run {run.run_id} is still open after {wait:g} s: {len(machine.committed)} of "
                    f"{machine.expected_count} workers committed (quorum {config.quorum}); pull again later",
                    reason=ParamserverReason.ROUND_STILL_OPEN,
                ) from None
        if round in run.closed_rounds:
            return
        if run.failure is not None:
            raise run.failure
        raise ParameterServerError(
            ErrorKind.FAILED_PRECONDITION,
            f"run {run.run_id} was closed before round {round} closed",
            reason=ParamserverReason.RUN_CLOSED,
        )

    async def parameters_payload(self, run_id: str) -> Served:
        """The run's current θ (fp32, from its checkpoint) and the round it starts."""
        run = self._run(run_id)
        if run.theta_layout is None:
            raise parameter_error(run_id)
        # θ of a round being closed or saved is about to be replaced: serve the new one.
        await self._settle(run)
        if run.unsaved is not None and run.failure is not None:
            raise run.failure  # θ on disk is a round behind what the workers hold
        round = run.state.theta_round
        assert round is not None
        return await self._served_file(run.store.theta(round), round)

    def _remember_digest(self, path: Path, payload_digest: Digest) -> None:
        stat = path.stat()
        if len(self._digest_cache) > 64:
            self._digest_cache.clear()
        self._digest_cache[(str(path), stat.st_size, stat.st_mtime_ns)] = payload_digest

    async def _served_file(self, path: Path, round: int) -> Served:
        stat = await asyncio.to_thread(path.stat)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        payload_digest = self._digest_cache.get(key)
        if payload_digest is None:
            hashed = await asyncio.to_thread(digest_file, path, DEFAULT_DIGEST)
            payload_digest = Digest(DEFAULT_DIGEST, hashed.hexdigest())
            self._remember_digest(path, payload_digest)
        layout = await asyncio.to_thread(tensorfile.read_layout, path)
        return Served(layout=layout, digest=payload_digest, round=round, path=path)

    # -- lookups ------------------------------------------------------------------------------------

    def _not_open(self, run_id: str) -> ParameterServerError:
        return ParameterServerError(
            ErrorKind.NOT_FOUND,
            f"run {run_id} is not open on this parameter server: its aggregate job must call OpenJob first",
            reason=ParamserverReason.RUN_NOT_OPEN,
            metadata={"run_id": run_id},
        )

    def _run(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise self._not_open(run_id)
        return run

    def _open_run(self, run_id: str) -> Run:
        run = self._run(run_id)
        if run.failure is not None:
            raise run.failure
        if run.state.closed:
            raise ParameterServerError(
                ErrorKind.FAILED_PRECONDITION,
                f"run {run_id} is closed (its aggregate job ended); pushes are not taken",
                reason=ParamserverReason.RUN_CLOSED,
            )
        return run


async def _on_payload(spool: Spool, work: Callable[[memoryview], _T]) -> _T:
    """``work(spool's payload)`` on a worker thread.

    NOTE: the view is made on that thread and is gone when ``work`` returns. A view passed as an
    argument (``to_thread(fn, spool.payload())``) stays in the executor's work item until its
    thread drops it, which may come after the caller resumed: the staging buffer, and its room
    in the budget, would outlive the push's discard by that moment.
    """
    return await asyncio.to_thread(lambda: work(spool.payload()))


def _update_key(run: Run, round: int, codec: str) -> tuple[str, str, int, str]:
    return ("update", run.run_id, round, codec)


def round_to_ms(seconds: float) -> float:
    return round(seconds, 3)


def _check_shapes(got: dict[str, tuple[int, ...]], want: dict[str, tuple[int, ...]]) -> None:
    if got == want:
        return
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(n for n in set(got) & set(want) if got[n] != want[n])
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:3])}")
    if extra:
        parts.append(f"unknown {', '.join(extra[:3])}")
    if wrong:
        name = wrong[0]
        parts.append(f"{name} has shape {list(got[name])}, the run's parameters {list(want[name])}")
    raise ParameterServerError(
        ErrorKind.INVALID_ARGUMENT,
        "the update's tensors do not match the run's parameters: " + "; ".join(parts),
        reason=ParamserverReason.LAYOUT_MISMATCH,
    )
