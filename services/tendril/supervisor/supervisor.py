"""The supervisor: start the children in dependency order, watch them, restart, register, stop.

Human-readable milestones (starting, serving, crashed/restarted, stopped) are printed on
stdout; structured events go to the supervisor's log (stderr). Each child writes to its own
file ``<state_dir>/logs/<name>.log``; when a child fails to start, its last lines are printed.

A child is restarted when its process exits, and also when it is alive but not whole: a
:class:`~tendril.supervisor.health.LivenessProbe` per serving child condemns one that answers
NOT_SERVING (a loop in it stalled) or nothing for ``supervisor.unresponsive_seconds`` (stopped,
hung); the supervisor kills it (SIGKILL: a stopped process cannot catch anything) and the
usual restart follows. Children die with the supervisor (``TENDRIL_SUPERVISOR_PID``, see
:func:`tendril.core.process.die_with_supervisor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from tendril.core import liveness
from tendril.core.amounts import Amount
from tendril.core.announce import RegistryAnnouncer
from tendril.core.logs import get_logger
from tendril.core.metrics import ServiceFigures
from tendril.core.process import EXIT_CONFIG, SUPERVISOR_PID_ENV, child_env
from tendril.core.worker_record import worker_record
from tendril.supervisor.child import Child
from tendril.supervisor.health import LivenessProbe, Started, wait_started
from tendril.supervisor.housekeeping import Housekeeping
from tendril.supervisor.metrics_endpoint import MetricsEndpoint
from tendril.supervisor.prepare import Prepared
from tendril.supervisor.reaper import Descendants, become_subreaper, reap_adopted
from tendril.supervisor.specs import dial_address, gateway_address, listen_address, stop_waves
from tendril.supervisor.statusfile import SupervisorStatus, write_status
from tendril_sdk.retry import Backoff

log = get_logger("tendril.supervisor")

WATCH_SECONDS = 0.1  # how often children are polled for an exit
REAP_SECONDS = 1.0  # how often descendants are listed and adopted orphans reaped
# NOTE: a child that served this long before it crashed is "stable": its next restart starts
# again from the first delay instead of continuing a crash loop's long delay.
STABLE_AFTER_SECONDS = 30.0
TAIL_LINES = 20
# the worker record's secret (without mTLS), so a restarted worker keeps its registry record
REGISTRY_SECRET_FILE = "registry-secret"

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_CANNOT_START = EXIT_CONFIG  # a child said it cannot start (exit 2: its state, its config)


def say(message: str) -> None:
    with contextlib.suppress(OSError):  # stdout on a full disk: the line is lost, not the worker
        print(message, flush=True)


def describe_exit(code: int | None) -> str:
    """'exited with code 3' / 'was killed by SIGKILL' for a Popen return code."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class Supervisor:
    """Runs one worker's processes until a signal; ``await run()`` returns the exit code."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.config = prepared.config
        self.worker_id = self.config.worker_id
        sup = self.config.supervisor
        self.metrics = MetricsEndpoint(
            self.config.metrics_listen(),
            prepared.run_dir / "metrics",
            self._service_figures,
            port_offset=self.config.worker.port_offset,
        )
        env = child_env({**self.metrics.child_env(), SUPERVISOR_PID_ENV: str(os.getpid())})
        self.children: dict[str, Child] = {
            spec.name: Child(
                spec,
                address=listen_address(self.config, spec),
                config_json=prepared.config_json,
                log_path=prepared.logs_dir / f"{spec.name}.log",
                env=env,
                backoff=Backoff(
                    sup.restart_backoff_seconds, sup.restart_backoff_max_seconds, stable_after=STABLE_AFTER_SECONDS
                ),
            )
            for spec in prepared.specs
        }
        self.status = SupervisorStatus(
            worker_id=self.worker_id,
            supervisor_pid=os.getpid(),
            state_dir=self.config.worker.state_dir,
            children={name: child.status for name, child in self.children.items()},
        )
        self._stopping = asyncio.Event()
        self._kill_now = asyncio.Event()
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._announcer: RegistryAnnouncer | None = None
        self._descendants = Descendants()
        self._probes: dict[str, tuple[LivenessProbe, asyncio.Task[None]]] = {}
        self._failed_code = EXIT_START_FAILED  # what run() returns when the start fails
        self._fatal: str | None = None  # a loop of the supervisor itself died
        self._registry_sync: asyncio.Task[None] | None = None

    # -- status ------------------------------------------------------------------------------

    def _save(self) -> None:
        if self._announcer is not None:
            self.status.registered = self._announcer.registered
        try:
            write_status(self.prepared.status_json, self.status)
        except OSError as exc:
            # NOTE: a full or read-only state dir must not stop the worker: status.json is
            # written again at the next change once the disk takes it.
            log.warning("supervisor.status_not_written", path=str(self.prepared.status_json), error=repr(exc))

    def _service_figures(self) -> dict[str, ServiceFigures]:
        # NOTE: called from the metrics endpoint's thread; it only reads ints and strings.
        return {
            name: ServiceFigures(child.status.restarts, child.status.state == "serving")
            for name, child in list(self.children.items())
        }

    def _managed_pids(self) -> set[int]:
        return {c.pid for c in self.children.values() if c.pid is not None}

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if self._stopping.is_set():
            # NOTE: a second Ctrl-C means "now": skip the graceful part of the stop.
            log.warning("supervisor.kill_now", signal=signal.Signals(signum).name)
            self._kill_now.set()
            return
        log.info("supervisor.signal", signal=signal.Signals(signum).name)
        self._stopping.set()

    # -- main --------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        if not become_subreaper():
            log.warning("supervisor.no_subreaper", detail="orphaned executors are found by pid snapshots only")
        self.metrics.start()  # before any child: a taken metrics port stops the worker here
        say(f"worker {self.worker_id}: starting {', '.join(self.children)}; logs in {self.prepared.logs_dir}")
        self._save()
        housekeeping = Housekeeping(self.config, self.prepared.logs_dir, [c.log_path for c in self.children.values()])
        await asyncio.to_thread(housekeeping.once)  # before the services write to their logs
        keeping = asyncio.create_task(housekeeping.run(), name="housekeeping")
        started = time.monotonic()
        code = EXIT_OK
        try:
            if await self._start_all():
                elapsed = time.monotonic() - started
                self.status.state = "serving"
                self.status.serving_at = time.time()
                self._save()
                say(f"worker {self.worker_id} serving: {self._ports()} (started in {elapsed:.1f}s)")
                log.info("supervisor.serving", startup_seconds=round(elapsed, 3))
                await self._register()
                await self._watch()
            elif not self._stopping.is_set():
                code = self._failed_code
            if self._fatal is not None:
                code = liveness.EXIT_LOOP_DIED
        finally:
            keeping.cancel()
            await self._stop_all()
            self.status.state = "stopped" if code == EXIT_OK else "failed"
            self._save()
            self.metrics.stop()
        return code

    def _ports(self) -> str:
        services = [f"{c.name} {c.address}" for c in self.children.values()]
        return ", ".join([*services, f"metrics http://{self.metrics.address}/metrics"])

    # -- start -------------------------------------------------------------------------------

    async def _start_one(self, child: Child) -> Started:
        deps = [self.children[d].serving.wait() for d in child.spec.depends_on if d in self.children]
        if deps:
            await asyncio.gather(*deps)
        child.spawn()
        self._save()
        result = await wait_started(
            child,
            dial_address(child.address),
            timeout=self.config.supervisor.start_timeout_seconds,
            stopping=self._stopping,
            peer_id=self.worker_id,
        )
        if result is Started.SERVING:
            child.mark_serving()
            self._start_probe(child)
            log.info("child.serving", child=child.name, pid=child.pid, address=child.address)
        self._save()
        return result

    async def _start_all(self) -> bool:
        """Start every child once its dependencies serve; False when one fails or on a signal."""
        tasks = {asyncio.create_task(self._start_one(c), name=f"start-{c.name}"): c for c in self.children.values()}
        stop = asyncio.create_task(self._stopping.wait())
        pending: set[asyncio.Task[object]] = {*tasks, stop}
        try:
            while pending - {stop}:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return False
                for task in done:
                    result = task.result()
                    if result is not Started.SERVING:
                        self._report_start_failure(tasks[task], result)
                        return False
            return True
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _report_start_failure(self, child: Child, result: object) -> None:
        if result is Started.EXITED and child.status.last_exit_code == EXIT_CANNOT_START:
            # NOTE: the child said why in one line (a damaged database, a folder it cannot write,
            # a bad setting); a restart would meet the same: stop with that line and exit 2,
            # which the systemd unit does not restart.
            child.status.state = "failed"
            why = self._said(child) or f"{describe_exit(EXIT_CANNOT_START)} (see {child.log_path})"
            log.error("child.cannot_start", child=child.name, reason=why)
            print(f"tendril: {child.name} cannot start: {why}", file=sys.stderr, flush=True)
            self._failed_code = EXIT_CANNOT_START
            return
        if result is Started.EXITED:
            why = f"{describe_exit(child.status.last_exit_code)} before it was SERVING"
        else:
            why = f"was not SERVING at {child.address} after {self.config.supervisor.start_timeout_seconds:g}s"
        child.status.state = "failed"
        log.error("child.start_failed", child=child.name, reason=why)
        lines = "\n".join(f"  | {line}" for line in child.log_tail(TAIL_LINES))
        print(
            f"tendril: {child.name} {why}; stopping the worker. Last lines of {child.log_path}:\n{lines}",
            file=sys.stderr,
            flush=True,
        )

    @staticmethod
    def _said(child: Child) -> str:
        """The one line a child printed on its way out (``tendril <name>: ...``), if any."""
        prefix = f"tendril {child.name}: "
        said = [line for line in child.log_tail(TAIL_LINES) if line.startswith(prefix)]
        return said[-1][len(prefix) :] if said else ""

    # -- registration ------------------------------------------------------------------------

    async def _register(self) -> None:
        res = self.config.resources
        total = Amount(res.cpu, res.memory_gib, res.storage_gib, int(res.gpu))
        self._announcer = RegistryAnnouncer(
            gateway_address(self.config),
            "worker",
            self.worker_id,
            worker_record(self.config, total),
            ttl_seconds=self.config.gateway.registry_ttl_seconds,
            peer_id=self.worker_id,
            on_death=self._loop_died,
            secret_file=Path(self.config.worker.state_dir) / REGISTRY_SECRET_FILE,
        )
        await self._announcer.start()
        self._save()

    def _loop_died(self, name: str, error: BaseException | None) -> None:
        """A loop of the supervisor ended: stop the worker (services first) and exit non-zero."""
        self._fatal = f"{name} {'returned' if error is None else f'raised {type(error).__name__}: {error}'}"
        log.critical("supervisor.loop_died", loop=name, exc_info=error)
        say(f"worker {self.worker_id}: the supervisor's {self._fatal}; stopping the worker")
        self._stopping.set()

    # -- liveness probes ---------------------------------------------------------------------

    def _start_probe(self, child: Child) -> None:
        self._stop_probe(child)
        probe = LivenessProbe(
            dial_address(child.address),
            peer_id=self.worker_id,
            unresponsive_seconds=self.config.supervisor.unresponsive_seconds,
            ready_name=child.spec.ready_name,
        )
        self._probes[child.name] = (probe, asyncio.create_task(probe.run(), name=f"probe-{child.name}"))

    def _stop_probe(self, child: Child) -> None:
        entry = self._probes.pop(child.name, None)
        if entry is not None:
            entry[1].cancel()

    def _condemn(self, child: Child, why: str) -> None:
        """``child`` runs but is not whole: kill it; the watch loop restarts it like a crash."""
        self._stop_probe(child)
        say(f"{child.name} (pid {child.pid}) {why}; killing it (SIGKILL) to restart it")
        log.error("child.unresponsive", child=child.name, pid=child.pid, reason=why)
        child.status.hung_kills += 1
        child.signal(signal.SIGKILL)

    # -- watch and restart -------------------------------------------------------------------

    async def _watch(self) -> None:
        """Until a signal: notice crashed children, restart them, reap adopted orphans."""
        last_reap = time.monotonic()
        registered = self.status.registered
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), WATCH_SECONDS)
            if self._stopping.is_set():
                return
            for child in self.children.values():
                if child.name in self._restarts or child.status.state != "serving":
                    continue
                code = child.poll()
                if code is not None:
                    self._stop_probe(child)
                    self._restarts[child.name] = asyncio.create_task(self._restart(child, code))
                    continue
                probe = self._probes.get(child.name)
                why = probe[0].verdict() if probe is not None else None
                if why is not None:
                    self._condemn(child, why)
                elif probe is not None and probe[0].ready != child.status.ready:
                    await self._readiness_changed(child, probe[0].ready)
            if time.monotonic() - last_reap >= REAP_SECONDS:
                last_reap = time.monotonic()
                self._descendants.snapshot()
                reap_adopted(self._managed_pids())
                if self._announcer is not None and self._announcer.registered != registered:
                    registered = not registered
                    self._save()

    async def _readiness_changed(self, child: Child, ready: bool) -> None:
        """``child`` says it can (again) or cannot do its work now: the registry record follows."""
        child.status.ready = ready
        child.status.unready_since = None if ready else time.time()
        if ready:
            say(f"{child.name} can work again; the worker is back in the registry")
            log.info("child.ready", child=child.name)
        else:
            say(
                f"{child.name} reports NOT_SERVING under {child.spec.ready_name} (see {child.log_path}); "
                "the worker leaves the registry and makes no offers until it can work again"
            )
            log.error("child.not_ready", child=child.name)
        self._save()
        if self._registry_sync is None or self._registry_sync.done():
            # NOTE: in the background: the watch loop must not wait on the gateway.
            self._registry_sync = asyncio.create_task(self._sync_registry(), name="registry-sync")

    async def _sync_registry(self) -> None:
        """Withdraw the registry record while a child cannot work, put it back once all can."""
        announcer = self._announcer
        while announcer is not None:
            unready = [c.name for c in self.children.values() if not c.status.ready]
            if bool(unready) == announcer.withdrawn:
                return
            if unready:
                await announcer.withdraw(f"{', '.join(unready)} cannot work now")
            else:
                await announcer.resume()
            self._save()

    async def _restart(self, child: Child, code: int) -> None:
        crashed_at = time.monotonic()
        delay = child.backoff.failed_after(child.uptime())
        self._forget_metrics(child)
        try:
            while not self._stopping.is_set():
                child.status.state = "backoff"
                self._save()
                said = self._said(child) if code == EXIT_CANNOT_START else ""
                because = f": {said}" if said else ""
                say(f"{child.name} {describe_exit(code)}{because}; restarting in {delay:.1f}s (see {child.log_path})")
                log.warning("child.crashed", child=child.name, exit_code=code, delay_seconds=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
                result = await self._start_one(child)
                if result is Started.SERVING:
                    downtime = time.monotonic() - crashed_at
                    say(f"{child.name} restarted (pid {child.pid}, restart #{child.status.restarts}, {downtime:.1f}s)")
                    log.info("child.restarted", child=child.name, restarts=child.status.restarts, seconds=downtime)
                    if child.name == "gateway" and self._announcer is not None:
                        # A restarted embedded gateway has an empty registry: put the record back now.
                        await self._announcer.put_once()
                    return
                if result is Started.STOPPING:
                    return
                child.signal(signal.SIGKILL)
                exit_code = await child.wait_exit(5.0)
                self._forget_metrics(child)
                code = -signal.SIGKILL if exit_code is None else exit_code
                delay = child.backoff.next()
        finally:
            self._restarts.pop(child.name, None)
            self._save()

    def _forget_metrics(self, child: Child) -> None:
        """The child's process ended: its live gauges (jobs active, leases active ...) stop counting."""
        if child.pid is not None:
            self.metrics.process_dead(child.pid)

    # -- stop --------------------------------------------------------------------------------

    async def _stop_all(self) -> None:
        """Stop children dependents-first with SIGTERM; SIGKILL what is left when the budget ends."""
        budget = self.config.supervisor.stop_timeout_seconds
        # NOTE: a small part of the budget is kept for the SIGKILL sweep and reaping.
        deadline = time.monotonic() + max(0.1, budget - min(0.5, budget / 4))
        self.status.state = "stopping"
        self._save()
        if any(c.alive for c in self.children.values()):
            say(f"worker {self.worker_id}: stopping")
        liveness.REGISTRY.stopping = True
        probes = [task for _, task in self._probes.values()]
        if self._registry_sync is not None:
            probes.append(self._registry_sync)
        self._probes.clear()
        for task in [*self._restarts.values(), *probes]:
            task.cancel()
        await asyncio.gather(*self._restarts.values(), *probes, return_exceptions=True)
        if self._announcer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._announcer.stop(), max(0.1, min(2.0, deadline - time.monotonic())))
        self._descendants.snapshot()
        for wave in stop_waves(self.prepared.specs):
            children = [self.children[s.name] for s in wave]
            for child in children:
                if child.alive:
                    child.status.state = "stopping"
                    child.signal(signal.SIGTERM)
            while any(c.alive for c in children) and time.monotonic() < deadline and not self._kill_now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kill_now.wait(), 0.05)
            for child in children:
                if child.alive:
                    log.warning("child.kill", child=child.name, pid=child.pid, reason="stop budget used up")
                    child.signal(signal.SIGKILL)
        for child in self.children.values():
            await child.wait_exit(2.0)
            child.status.state = "stopped"
        leftovers = self._descendants.kill_all()
        if leftovers:
            log.warning("supervisor.killed_leftovers", pids=leftovers)
        await self._reap_all(1.0)
        say(f"worker {self.worker_id}: stopped")

    async def _reap_all(self, timeout: float) -> None:
        """Reap adopted processes until none is left below the supervisor (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reap_adopted(set())
            if not self._descendants.alive():
                return
            await asyncio.sleep(0.02)
