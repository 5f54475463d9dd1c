"""Is this process alive? Its long-running loops say so.

A service process runs a few loops for its whole life (the LeaseService's pruner, the
Arbiter's decisions, the gateway's TTL sweeper, stream followers, ...). Two things can go
wrong with such a loop while the process still answers calls:

* it **dies** (an exception ends it): :func:`supervised` runs it as a task whose end, other than
  a cancel, is fatal: the exception is logged with its traceback and the process exits with
  :data:`EXIT_LOOP_DIED` at once, like a crash, so the supervisor restarts it (every service
  already survives a SIGKILL; a half-alive process that serves without, say, its decision
  loop would never be restarted);
* it **stalls** (alive, but stuck on something that never comes): a loop registered with
  ``every=T`` (the longest gap between two of its beats in normal work: its period, or its
  longest bounded step) calls :func:`beat` on each turn; one that has not beaten for
  ``T + STALL_GRACE_SECONDS`` is *stalled*. Waiting for input is not stalling: a loop marks
  such waits with ``with idle():`` (the Arbiter waiting for requests, a prefetch loop waiting
  for its reader). A loop given no ``every`` is watched for death only (stream followers: they
  wait on a peer, whose own liveness is its supervisor's business).

The process's :data:`REGISTRY` holds the loops. Its watchdog (a task on the event loop,
ticking every :data:`WATCHDOG_SECONDS`, started by :class:`tendril.core.server.ServiceServer`)
tells every server of the process when the set of stalled loops changes; the servers then
answer grpc.health.v1 NOT_SERVING for every name, :data:`HEALTH_NAME` included, which the
supervisor probes and acts on. Time during which the event loop itself did not run (a long
synchronous call) is not counted against the loops: the watchdog measures how late it woke
and forgives that much. A blocked event loop answers no health check at all, which the
supervisor's probe deadline catches instead (``supervisor.unresponsive_seconds``).

Fault injection for tests (read only when ``TENDRIL_TESTING=1``, never in production): with
``TENDRIL_TEST_FAULT_DIR=<dir>``, a file ``<dir>/<loop name>.die`` makes that loop raise,
and ``<loop name>.stall`` makes its beats stop counting until the process ends. Each file is
removed when taken, so the restarted process runs clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from tendril.core.logs import get_logger

log = get_logger("tendril.liveness")

HEALTH_NAME = "tendril.liveness"  # the grpc.health.v1 name the supervisor probes
EXIT_LOOP_DIED = 70  # sysexits EX_SOFTWARE: a supervised loop ended; the process is not whole
WATCHDOG_SECONDS = 0.25  # how often the watchdog looks at the loops
# NOTE: on top of a loop's own ``every``: scheduling jitter of a busy event loop (on two cores
# shared with training, callbacks run up to a few hundred ms late) without a false alarm. A
# loop held up by a busy event loop is forgiven anyway: the watchdog is held up alike.
STALL_GRACE_SECONDS = 1.0
LAG_WARNING_SECONDS = 1.0  # an event-loop stall this long is logged (liveness.event_loop_blocked)

TESTING_ENV = "TENDRIL_TESTING"
FAULT_DIR_ENV = "TENDRIL_TEST_FAULT_DIR"
FAULT_POLL_SECONDS = 0.1

Listener = Callable[[bool, list[str]], Awaitable[None]]


class InjectedFault(RuntimeError):
    """The failure a test asked for through ``TENDRIL_TEST_FAULT_DIR``."""


@dataclasses.dataclass(eq=False)
class Heartbeat:
    """One registered loop: when it last beat, whether it waits for input now."""

    name: str
    every: float | None  # None: watched for death only
    last: float
    waiting: int = 0  # > 0 while inside idle()
    muted: bool = False  # a test stalled it (TENDRIL_TEST_FAULT_DIR)
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def stall_after(self) -> float | None:
        return None if self.every is None else self.every + STALL_GRACE_SECONDS

    def beat(self, now: float | None = None) -> None:
        if not self.muted:
            self.last = time.monotonic() if now is None else now

    def stalled_for(self, now: float) -> float | None:
        """Seconds since the last beat when the loop counts as stalled, else None."""
        limit = self.stall_after
        if limit is None or (self.waiting and not self.muted):  # a stalled test loop stalls even idle
            return None
        silent = now - self.last
        return silent if silent > limit else None


class Registry:
    """The loops of one process, and the watchdog that reports stalls to its servers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._beats: list[Heartbeat] = []
        self._listeners: list[Listener] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._stalled: list[str] = []
        self.stopping = False  # the process is stopping: a loop ending now is not a failure
        self.max_lag = 0.0  # the longest event-loop stall the watchdog saw (seconds)

    # -- loops -------------------------------------------------------------------------------

    def register(self, name: str, every: float | None = None) -> Heartbeat:
        if every is not None and every <= 0:
            raise ValueError(f"every must be > 0 seconds, got {every}")
        heartbeat = Heartbeat(name, every, self.clock(), loop=_running_loop())
        self._beats.append(heartbeat)
        return heartbeat

    def unregister(self, heartbeat: Heartbeat) -> None:
        with contextlib.suppress(ValueError):
            self._beats.remove(heartbeat)

    def names(self) -> list[str]:
        return [b.name for b in self._beats]

    def stalled(self, now: float | None = None) -> list[tuple[str, float]]:
        """(name, seconds silent) of every stalled loop of the running event loop."""
        now = self.clock() if now is None else now
        current = _running_loop()
        found = []
        for heartbeat in self._beats:
            if current is not None and heartbeat.loop not in (None, current):
                continue  # a loop of another (closed) event loop: tests run many
            silent = heartbeat.stalled_for(now)
            if silent is not None:
                found.append((heartbeat.name, silent))
        return found

    def forgive(self, seconds: float) -> None:
        """The event loop did not run for ``seconds``: that time is no loop's fault."""
        for heartbeat in self._beats:
            if not heartbeat.muted:
                heartbeat.last += seconds

    # -- watchdog ----------------------------------------------------------------------------

    def alive(self) -> bool:
        return not self._stalled

    def subscribe(self, listener: Listener) -> None:
        """``await listener(alive, stalled names)`` on every change; starts the watchdog."""
        self._listeners.append(listener)
        loop = asyncio.get_running_loop()
        if self._watchdog is None or self._watchdog.done() or self._watchdog.get_loop() is not loop:
            # NOTE: a new event loop is a new life of the process (tests run many in one).
            self._stalled = []
            self.stopping = False
            self._watchdog = loop.create_task(self._watch(), name="liveness-watchdog")

    def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        if not self._listeners and self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def _watch(self) -> None:
        expected = self.clock() + WATCHDOG_SECONDS
        while True:
            await asyncio.sleep(max(0.0, expected - self.clock()))
            now = self.clock()
            lag = now - expected
            expected = now + WATCHDOG_SECONDS
            if lag > 0:
                self.forgive(lag)
                self.max_lag = max(self.max_lag, lag)
                if lag >= LAG_WARNING_SECONDS:
                    log.warning("liveness.event_loop_blocked", seconds=round(lag, 3))
            await self.check(now)

    async def check(self, now: float | None = None) -> None:
        """Look at the loops once and tell the listeners when the stalled set changed."""
        stalled = self.stalled(now)
        names = sorted(name for name, _ in stalled)
        if names == self._stalled:
            return
        for name, silent in stalled:
            if name not in self._stalled:
                log.error("liveness.loop_stalled", loop=name, silent_seconds=round(silent, 3))
        for name in self._stalled:
            if name not in names:
                log.info("liveness.loop_recovered", loop=name)
        self._stalled = names
        for listener in list(self._listeners):
            try:
                await listener(not names, names)
            except Exception as exc:  # one server's health must not stop the watchdog
                log.error("liveness.listener_failed", exc_info=exc)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


REGISTRY = Registry()
_CURRENT: contextvars.ContextVar[Heartbeat | None] = contextvars.ContextVar("tendril_liveness_loop", default=None)


def beat() -> None:
    """The calling loop made progress (a no-op outside a :func:`supervised` loop)."""
    heartbeat = _CURRENT.get()
    if heartbeat is not None:
        heartbeat.beat()


@contextlib.contextmanager
def idle() -> Iterator[None]:
    """The calling loop waits for input (no stall while inside); it beats when the wait ends."""
    heartbeat = _CURRENT.get()
    if heartbeat is None:
        yield
        return
    heartbeat.waiting += 1
    try:
        yield
    finally:
        heartbeat.waiting -= 1
        heartbeat.beat()


def supervised(
    coro: Coroutine[Any, Any, Any],
    *,
    name: str,
    every: float | None = None,
    forever: bool = True,
    on_death: Callable[[str, BaseException | None], None] | None = None,
    registry: Registry | None = None,
) -> asyncio.Task[Any]:
    """Run the loop ``coro`` as a task of this process whose failure ends the process.

    ``every``: the longest gap between two :func:`beat` calls of the loop in normal work
    (None: no stall check). ``forever``: the loop never returns; returning counts as dying
    (a per-job loop that may end gives False). ``on_death(name, exception)`` replaces the
    default (log, then exit with :data:`EXIT_LOOP_DIED`), e.g. for the supervisor, which stops
    its services first. Cancelling the task is the normal way to stop it.
    """
    registry = registry or REGISTRY
    heartbeat = registry.register(name, every)
    context = contextvars.copy_context()
    context.run(_CURRENT.set, heartbeat)
    fault_dir = _fault_dir()
    body = coro if fault_dir is None else _with_faults(coro, name, heartbeat, fault_dir)
    task = asyncio.get_running_loop().create_task(body, name=name, context=context)

    def ended(done: asyncio.Task[Any]) -> None:
        registry.unregister(heartbeat)
        if done.cancelled():
            return
        error = done.exception()
        if error is None and not forever:
            return
        if registry.stopping:
            with contextlib.suppress(Exception):
                log.warning("liveness.loop_ended_while_stopping", loop=name, error=repr(error))
            return
        (on_death or die)(name, error)

    task.add_done_callback(ended)
    return task


def die(name: str, error: BaseException | None) -> None:
    """A supervised loop ended: say so (log with traceback, one line on stderr) and exit now."""
    why = "returned" if error is None else f"raised {type(error).__name__}: {error}"
    # NOTE: each write may fail (a full disk holds the log file); the exit must happen anyway.
    with contextlib.suppress(Exception):
        log.critical("liveness.loop_died", loop=name, exc_info=error, exit_code=EXIT_LOOP_DIED)
    with contextlib.suppress(Exception):
        print(
            f"tendril: loop {name} {why}; exiting with code {EXIT_LOOP_DIED} so that the process is restarted",
            file=sys.stderr,
            flush=True,
        )
    exit_now(EXIT_LOOP_DIED)


def exit_now(code: int) -> None:
    """End the process at once, like a crash (no clean-up runs: every service survives a SIGKILL)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# -- fault injection for tests --------------------------------------------------------------------


def _fault_dir() -> Path | None:
    if os.environ.get(TESTING_ENV) != "1":
        return None
    folder = os.environ.get(FAULT_DIR_ENV, "")
    return Path(folder) if folder else None


async def _with_faults(coro: Coroutine[Any, Any, Any], name: str, heartbeat: Heartbeat, folder: Path) -> Any:
    """Run ``coro``; raise InjectedFault when ``<folder>/<name>.die`` appears, mute the beats on ``.stall``."""
    inner = asyncio.ensure_future(coro)
    die_file, stall_file = folder / f"{name}.die", folder / f"{name}.stall"
    try:
        while not inner.done():
            if _take(stall_file):
                heartbeat.muted = True
                log.warning("liveness.fault_injected", loop=name, fault="stall")
            if _take(die_file):
                log.warning("liveness.fault_injected", loop=name, fault="die")
                raise InjectedFault(f"{name}: fault injected by the test ({die_file})")
            await asyncio.wait({inner}, timeout=FAULT_POLL_SECONDS)
        return inner.result()
    finally:
        if not inner.done():
            inner.cancel()
            with contextlib.suppress(BaseException):
                await inner


def _take(path: Path) -> bool:
    """True once for a fault file: it is removed, so the restarted process runs clean."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
