"""The ParameterServer's logic (no gRPC): runs, pushes, round closing, served payloads.

A run is keyed by the DiLoCo run id (``run_id`` of the proto messages). Everything big
lives in files (see :mod:`.store`); memory holds only small state. Blocking work (hashing a
resumed partial, scanning for NaN, folding a round, encoding an update) runs in threads so
the event loop keeps receiving other pushes.

Every change of a run's round state (opened, a commit, a round closing, the next round, the
run finished or closed) is published to the run's watchers (:meth:`ParameterServerCore.watch_round`),
each through its own bounded queue (:mod:`tendril.core.fanout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import math
import os
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

from tendril.core import metrics, tensorfile
from tendril.core.codecs import CODECS
from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout, Overflow
from tendril.core.logs import get_logger
from tendril.core.streaming import StreamInfo
from tendril.core.tensorfile import Layout
from tendril.paramserver.aggregate import Contribution, close_round
from tendril.paramserver.errors import ParameterServerError, ParamserverReason, StreamReason
from tendril.paramserver.rounds import Phase, RoundMachine, RunConfig
from tendril.paramserver.spool import Spool
from tendril.paramserver.store import RunStore, SavedState, UpdateRecord, parameter_error, saved_runs

log = get_logger("tendril.paramserver")

KEEP_UPDATES = 4  # rounds whose update stays pullable (slow workers pull late)
CLOSE_ALLOWANCE_SECONDS = 60.0  # added to the round timeout when a pull waits "the run's round timeout"
WATCH_QUEUE = 1024  # changes a WatchRound watcher may fall behind before it is cut off


@dataclasses.dataclass(frozen=True)
class Served:
    """A payload file to stream out, with what its header says."""

    path: Path
    layout: Layout
    sha256: str
    round: int
    contributors: int = 0
    weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class RoundView:
    """What GetRound answers."""

    run_id: str
    round: int
    closed: bool
    committed: list[str]
    known_workers: list[str]
    pushes_in_flight: int


class RunState(enum.Enum):
    """Where a run is as a whole (``tendril.paramserver.v1.RunState``)."""

    OPEN = "open"
    FINISHED = "finished"  # its last round closed and that round's update is saved
    CLOSED = "closed"  # CloseJob


@dataclasses.dataclass(frozen=True)
class RoundStatus:
    """What WatchRound sends: the state of a run's current round at one moment."""

    run_id: str
    round: int
    closed: bool  # the round takes no more pushes (being aggregated, or the run is over)
    committed: tuple[str, ...]
    expected_workers: int
    rounds: int
    run_state: RunState

    @property
    def ended(self) -> bool:
        """Nothing changes after this status: a watch ends with it."""
        return self.run_state is not RunState.OPEN


class Run:
    """One run's state in memory."""

    def __init__(self, store: RunStore, state: SavedState, *, resumed: bool) -> None:
        self.store = store
        self.state = state
        phase = Phase.FINISHED if state.finished else Phase.OPEN
        self.machine = RoundMachine(store.run_id, state.config, round=state.round, phase=phase)
        self.resumed = resumed
        self.pushes: dict[str, Spool] = {}
        self.param_pushes: dict[str, Spool] = {}
        self.known_workers: set[str] = set()
        self.changed = asyncio.Condition()
        self.closing: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.failure: ParameterServerError | None = None
        self.gone = False
        self.encode_locks: dict[tuple[int, str], asyncio.Lock] = {}
        self.theta_shapes: dict[str, tuple[int, ...]] | None = None
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
            expected_workers=self.state.config.expected_workers,
            rounds=self.state.config.rounds,
            run_state=run_state,
        )

    def publish(self) -> None:
        """Tell the watchers the round state now (never waits: a slow watcher is cut off)."""
        self.watchers.publish(self.status())

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class ParameterServerCore:
    """All runs of one ParameterServer, state under ``root`` (``<state_dir>/paramserver``)."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self._sha_cache: dict[tuple[str, int, int], str] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    async def load_saved(self) -> None:
        """Pick up every run saved under ``root`` (a restarted server resumes where it was)."""
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
            log.info("paramserver.resumed", run_id=run_id, round=state.round, finished=state.finished)
            self._after_commit(run)

    def _restore(self, run: Run) -> None:
        run.store.sweep(run.state)
        with contextlib.suppress(FileNotFoundError):
            for path in (run.store.dir / "params").iterdir():
                path.unlink(missing_ok=True)
        if run.state.theta_round is not None:
            run.theta_shapes = tensorfile.read_layout(run.store.theta(run.state.theta_round)).shapes()
        if run.machine.phase is Phase.OPEN:
            now = self.clock()
            for push in run.store.committed_pushes(run.state.round):
                run.machine.commit(push.worker_id, push.weight, now)
                run.known_workers.add(push.worker_id)

    async def stop(self) -> None:
        """Let rounds being closed finish (their results must reach the disk)."""
        for run in list(self.runs.values()):
            if run.timer:
                run.timer.cancel()
            if run.closing:
                with contextlib.suppress(Exception):
                    await run.closing
            for spool in [*run.pushes.values(), *run.param_pushes.values()]:
                spool.close_file()

    # -- jobs -------------------------------------------------------------------------------------

    async def open_job(self, run_id: str, config: RunConfig) -> tuple[int, bool]:
        """Start (or resume, or reconfigure) a run; returns (current round, resumed from disk)."""
        run = self.runs.get(run_id)
        if run is None:
            store = RunStore(self.root, run_id)
            if store.exists():
                run = Run(store, store.load(), resumed=True)
                await asyncio.to_thread(self._restore, run)
            else:
                run = Run(store, SavedState(config=config), resumed=False)
            self.runs[run_id] = run
        run.state.config = config
        run.machine.config = config
        run.state.closed = False
        run.failure = None
        await asyncio.to_thread(run.store.save, run.state)
        log.info("paramserver.open_job", run_id=run_id, round=run.machine.round, resumed=run.resumed, **vars(config))
        run.publish()
        self._after_commit(run)
        return run.machine.round, run.resumed

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
        if run.closing:
            with contextlib.suppress(Exception):
                await run.closing
        closed = ParameterServerError(
            ErrorKind.FAILED_PRECONDITION, f"run {run_id} was closed (CloseJob)", reason=ParamserverReason.RUN_CLOSED
        )
        for spool in [*run.pushes.values(), *run.param_pushes.values()]:
            spool.stale = closed
            spool.close_file()
        run.pushes.clear()
        run.param_pushes.clear()
        run.state.closed = True
        if purge:
            await asyncio.to_thread(run.store.purge)
            run.gone = True
            del self.runs[run_id]
        else:
            await asyncio.to_thread(run.store.save, run.state)
        run.publish()  # CLOSED: its watchers read it and end (a purged run's too)
        await run.notify()
        log.info("paramserver.close_job", run_id=run_id, purge=purge, round=run.machine.round)

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
            known_workers=sorted(run.known_workers),
            pushes_in_flight=sum(1 for s in run.pushes.values() if s.stale is None),
        )

    # -- pushes of updates -------------------------------------------------------------------------

    async def begin_push(self, info: StreamInfo) -> Spool:
        """Check a PushUpdate header and return its spool (a new one, or the one to resume)."""
        run = self._open_run(info.run_id)
        if run.state.theta_round is None or run.theta_shapes is None:
            raise parameter_error(run.run_id)
        run.machine.check_push(info.round, info.worker_id)
        if not math.isfinite(info.weight) or info.weight <= 0:
            raise ParameterServerError(
                ErrorKind.INVALID_ARGUMENT,
                f"weight must be a finite number > 0 (the samples behind the update), got {info.weight}",
                reason=ParamserverReason.BAD_WEIGHT,
            )
        _check_shapes(info.layout.shapes(), run.theta_shapes)
        return await self._spool_for(run.pushes, info, run.store.partial(info.round, info.stream_id))

    async def _spool_for(self, table: dict[str, Spool], info: StreamInfo, path: Path) -> Spool:
        known = table.get(info.stream_id)
        if known is not None and known.stale is None:
            if not known.same_payload(info):
                raise ParameterServerError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"stream_id {info.stream_id} is already used for another payload; use a fresh id",
                    reason=ParamserverReason.STREAM_ID_REUSED,
                )
            await known.take_over()
            return known
        spool = await asyncio.to_thread(Spool.open, info, path)
        spool.owner = asyncio.current_task()
        table[info.stream_id] = spool
        return spool

    async def commit_push(self, spool: Spool) -> int:
        """Count a completely received push in its round; returns the round's contributors so far."""
        info = spool.info
        run = self._open_run(info.run_id)
        try:
            layout = await spool.finish()
            bad = await asyncio.to_thread(tensorfile.all_finite, spool.path, layout)
            if bad is not None:
                raise ParameterServerError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"tensor {bad!r} of the update holds NaN or Inf; it was not counted (check the training run)",
                    reason=ParamserverReason.NON_FINITE_UPDATE,
                )
            if spool.stale is not None:
                raise spool.stale
            # Re-check after the awaits: the round may have closed or the worker committed meanwhile.
            run.machine.check_push(info.round, info.worker_id)
        except ParameterServerError:
            self._drop(run.pushes, spool)
            raise
        target = run.store.committed(info.round, info.worker_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        spool.close_file()
        os.replace(spool.path, target)
        run.store.mark_committed(info.round, info.worker_id, info.weight, info.stream_id)
        run.machine.commit(info.worker_id, info.weight, self.clock())
        run.known_workers.add(info.worker_id)
        del run.pushes[info.stream_id]
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

    def release(self, spool: Spool) -> None:
        """The call feeding ``spool`` ended (cut, or waiting for its commit)."""
        if spool.owner is asyncio.current_task():
            spool.owner = None

    @staticmethod
    def _drop(table: dict[str, Spool], spool: Spool) -> None:
        spool.discard()
        key = spool.info.stream_id
        if table.get(key) is spool:
            del table[key]

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
        machine, state, store = run.machine, run.state, run.store
        round = machine.round
        first_commit_at = machine.first_commit_at  # the round's duration is measured from here
        contributions = machine.begin_close()
        run.publish()
        # Pushes still in flight for this round can no longer count.
        late = ParameterServerError(
            ErrorKind.FAILED_PRECONDITION,
            f"round {round} of run {run.run_id} closed while this push was in flight; round {round + 1} is open: "
            f"pull round {round}'s update and push for round {round + 1}",
            reason=ParamserverReason.ROUND_CLOSED,
        )
        for spool in run.pushes.values():
            spool.stale = late
        theta_round = state.theta_round if state.theta_round is not None else round
        started = time.perf_counter()
        try:
            out = await asyncio.to_thread(
                close_round,
                theta=store.theta(theta_round),
                momentum=store.momentum(theta_round) if state.has_momentum else None,
                contributions=[Contribution(w, weight, store.committed(round, w)) for w, weight in contributions],
                lr=state.config.outer_lr,
                mu=state.config.outer_momentum,
                out_theta=store.theta(round + 1),
                out_momentum=store.momentum(round + 1),
                out_update=store.update(round, "fp32"),
            )
            # The new state is saved before it is used: a crash or a failed save leaves the old one.
            finished = bool(state.config.rounds) and round + 1 >= state.config.rounds
            updates = {**state.updates, round: UpdateRecord(out.contributors, out.weight)}
            new_state = dataclasses.replace(
                state,
                round=round if finished else round + 1,
                finished=finished,
                theta_round=round + 1,
                has_momentum=True,
                updates={r: updates[r] for r in sorted(updates)[-KEEP_UPDATES:]},
            )
            await asyncio.to_thread(store.save, new_state)
        except Exception as exc:
            log.error("paramserver.close_failed", run_id=run.run_id, round=round, exc_info=exc)
            run.failure = ParameterServerError(
                ErrorKind.INTERNAL,
                f"computing the update of round {round} of run {run.run_id} failed: {exc}; "
                "check the parameter server's disk and log, then reopen the run (OpenJob)",
                reason=ParamserverReason.AGGREGATION_FAILED,
            )
            machine.abort_close()
            run.closing = None
            run.publish()  # its watchers end with the failure
            await run.notify()
            return
        run.state = state = new_state
        machine.finish_close()
        run.publish()
        # NOTE: from here on the round is closed and saved; whatever fails below (clean-up,
        # telemetry), the pulls waiting for it must be woken, so the wake-up is in `finally`.
        try:
            for spool in run.pushes.values():
                spool.close_file()
            run.pushes.clear()
            log.info(
                "paramserver.round_closed",
                run_id=run.run_id,
                round=round,
                contributors=out.contributors,
                workers=[w for w, _ in contributions],
                weight=out.weight,
                seconds=round_to_ms(time.perf_counter() - started),
                finished=state.finished,
            )
            metrics.round_closed(None if first_commit_at is None else self.clock() - first_commit_at)
            await asyncio.to_thread(store.sweep, state)
        except Exception as exc:  # left-overs only cost disk; the next sweep retries
            log.warning("paramserver.after_close_failed", run_id=run.run_id, round=round, error=repr(exc))
        finally:
            run.closing = None
            await run.notify()

    # -- θ0 ------------------------------------------------------------------------------------------

    async def begin_parameters(self, info: StreamInfo) -> Spool | None:
        """Spool for a θ0 offer, or None when the run already has parameters (the offer loses)."""
        run = self._open_run(info.run_id)
        if run.state.theta_round is not None:
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
        return await self._spool_for(run.param_pushes, info, run.store.params_partial(info.stream_id))

    async def commit_parameters(self, spool: Spool) -> tuple[bool, int]:
        """Make a complete θ0 offer the run's parameters unless another won; (accepted, round)."""
        run = self._open_run(spool.info.run_id)
        staged = spool.path.with_suffix(".fp32")
        try:
            layout = await spool.finish()
            bad = await asyncio.to_thread(tensorfile.all_finite, spool.path, layout)
            if bad is not None:
                raise ParameterServerError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"tensor {bad!r} of θ0 holds NaN or Inf",
                    reason=ParamserverReason.NON_FINITE_PARAMETERS,
                )
            spool.close_file()
            if layout.codec == "fp32":
                os.replace(spool.path, staged)
            else:
                await asyncio.to_thread(tensorfile.convert_file, spool.path, staged, "fp32")
            if run.state.theta_round is not None:
                return False, run.machine.round
            round = run.machine.round
            os.replace(staged, run.store.theta(round))
            run.theta_shapes = layout.shapes()
            run.state.theta_round = round
            run.state.has_momentum = False
            await asyncio.to_thread(run.store.save, run.state)
            log.info("paramserver.parameters", run_id=run.run_id, round=round, tensors=len(layout.tensors))
            return True, round
        finally:
            staged.unlink(missing_ok=True)
            self._drop(run.param_pushes, spool)

    # -- served payloads ------------------------------------------------------------------------------

    async def update_payload(self, run_id: str, round: int, codec: str, timeout: float) -> Served:
        """The outer update of ``round`` in ``codec`` (empty: the run's), waiting for the round to close."""
        run = self._run(run_id)
        if codec and codec not in CODECS:
            raise ParameterServerError(
                ErrorKind.INVALID_ARGUMENT, f"unknown codec {codec!r}", reason=StreamReason.BAD_CODEC
            )
        codec = codec or run.state.config.codec
        next_soon = run.machine.phase is Phase.CLOSING and round == run.machine.round + 1
        if round > run.machine.round and not next_soon:
            raise ParameterServerError(
                ErrorKind.FAILED_PRECONDITION,
                f"round {round} of run {run_id} is not open yet; round {run.machine.round} is open",
                reason=ParamserverReason.ROUND_NOT_OPEN,
            )
        if round not in run.state.updates:
            await self._wait_closed(run, round, timeout)
        record = run.state.updates[round]
        path = run.store.update(round, codec)
        if codec != "fp32":
            lock = run.encode_locks.setdefault((round, codec), asyncio.Lock())
            async with lock:
                if not path.exists():
                    await asyncio.to_thread(tensorfile.convert_file, run.store.update(round, "fp32"), path, codec)
        return await self._served(path, round, contributors=record.contributors, weight=record.weight)

    async def _wait_closed(self, run: Run, round: int, timeout: float) -> None:
        if round < run.machine.round or (run.machine.phase is Phase.FINISHED and round == run.machine.round):
            raise ParameterServerError(
                ErrorKind.FAILED_PRECONDITION,
                f"the update of round {round} of run {run.run_id} is no longer kept (the last {KEEP_UPDATES} "
                "rounds are): pull the current parameters instead (PullParameters)",
                reason=ParamserverReason.UPDATE_GONE,
            )
        config = run.state.config
        wait = timeout
        if not wait and config.round_timeout_seconds:
            wait = config.round_timeout_seconds + CLOSE_ALLOWANCE_SECONDS

        def ready() -> bool:
            return round in run.state.updates or run.failure is not None or run.gone or run.state.closed

        try:
            async with run.changed:
                await asyncio.wait_for(run.changed.wait_for(ready), timeout=wait or None)
        except TimeoutError:
            if not ready():  # (else it closed just as the wait ran out)
                machine = run.machine
                raise ParameterServerError(
                    ErrorKind.DEADLINE_EXCEEDED,
                    f"round {round} of run {run.run_id} is still open after {wait:g} s: {len(machine.committed)} of "
                    f"{config.expected_workers} workers committed (quorum {config.quorum}); pull again later",
                    reason=ParamserverReason.ROUND_STILL_OPEN,
                ) from None
        if run.failure is not None:
            raise run.failure
        if round not in run.state.updates:
            raise ParameterServerError(
                ErrorKind.FAILED_PRECONDITION,
                f"run {run.run_id} was closed before round {round} closed",
                reason=ParamserverReason.RUN_CLOSED,
            )

    async def parameters_payload(self, run_id: str) -> Served:
        """The run's current θ (fp32) and the round it starts."""
        run = self._run(run_id)
        if run.state.theta_round is None:
            raise parameter_error(run_id)
        if run.closing is not None:
            # θ of the round being closed is about to be replaced: serve the new one.
            with contextlib.suppress(Exception):
                await asyncio.shield(run.closing)
        round = run.state.theta_round
        return await self._served(run.store.theta(round), round)

    async def _served(self, path: Path, round: int, *, contributors: int = 0, weight: float = 0.0) -> Served:
        stat = await asyncio.to_thread(path.stat)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        sha = self._sha_cache.get(key)
        if sha is None:
            sha = (await asyncio.to_thread(tensorfile.sha256_file, path)).hexdigest()
            if len(self._sha_cache) > 64:
                self._sha_cache.clear()
            self._sha_cache[key] = sha
        layout = await asyncio.to_thread(tensorfile.read_layout, path)
        return Served(path, layout, sha, round, contributors, weight)

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
