"""A whole Tendril network on one machine, as real processes: gateway, data node, supervised
workers and the reference scheduler. ``make demo`` and the end-to-end test start it.

Every process gets its own session (process group) and log file under ``root/logs``; ``stop``
sends SIGTERM in the reverse order of start (scheduler, workers, data node, gateway), waits,
then SIGKILLs whatever is left — nothing outlives the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tendril.core.config import WorkerConfig, default_executors, shift_port
from tendril.core.errors import ErrorKind
from tendril.core.health import check_serving
from tendril.core.ports import PICKER, ephemeral_range
from tendril.core.process import child_env
from tendril.core.server import check_bindable
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason
from tendril_sdk.files import memory_backed

STOP_SECONDS = 15.0


@dataclasses.dataclass
class Proc:
    """One started process."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    tier: int  # stop order: higher tiers stop first (scheduler, workers, data node, gateway)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """One worker of the cluster."""

    worker_id: str
    port_offset: int
    strategy: str = "whole"  # "flexible" lets it hold a training lease and the parameter server's
    cpu: float = 2.0
    extra: tuple[tuple[str, Any], ...] = ()  # more worker.toml keys: (("job.keep_work_dirs", True), ...)
    # Only the built-in executors of these classes (e.g. ("aggregate", "eval"): a host for the
    # parameter server that never takes a training job); () keeps every built-in one.
    executor_classes: tuple[str, ...] = ()


def port_free(address: str) -> bool:
    """True when a server could listen on ``address`` now (the supervisor's own check)."""
    return check_bindable(address) == 0


def worker_ports(offset: int) -> list[str]:
    """Every address a worker with ``offset`` listens on."""
    defaults = WorkerConfig()
    addresses = [shift_port(getattr(defaults, s).listen, offset) for s in WorkerConfig.SERVICE_SECTIONS]
    metrics = shift_port(defaults.telemetry.metrics_listen, offset)
    return [*addresses, metrics, shift_port(defaults.paramserver.data_listen, offset)]


def _quiet(address: str, low: int, high: int) -> bool:
    port = int(address.rpartition(":")[2])
    return port < 65536 and not low <= port <= high


def pick_offsets(count: int, *, low: int = 11000, high: int = 14400, step: int = 10) -> list[int]:
    """``count`` port offsets whose worker ports are all free right now, picked at random.

    NOTE: every port is kept outside the kernel's ephemeral range: a port in it can be taken
    by any outgoing connection (or a port-0 bind) between our check and the worker's bind.
    Offsets 11000-14400 put the services at 61051-64455 and metrics at 20464-23864; the ports
    are claimed from this process's port picker (:mod:`tendril.core.ports`), so that a later
    :func:`free_address` cannot hand one out before the worker binds it. Random offsets keep
    two clusters started at once (a demo and a test) apart.
    """
    eph_low, eph_high = ephemeral_range()
    candidates = list(range(low, high + 1, step))
    random.shuffle(candidates)
    found: list[int] = []
    for offset in candidates:
        addresses = worker_ports(offset)
        if not all(_quiet(a, eph_low, eph_high) for a in addresses) or not all(port_free(a) for a in addresses):
            continue
        if PICKER.claim(int(a.rpartition(":")[2]) for a in addresses):
            found.append(offset)
            if len(found) == count:
                return found
    raise SchedulerError(
        ErrorKind.RESOURCE_EXHAUSTED,
        f"found no free ports for {count} local workers",
        reason=SchedulerRunReason.NO_FREE_PORTS,
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def worker_toml(spec: WorkerSpec, root: Path, gateway: str, *, handoff_dir: Path | None = None) -> str:
    """A worker.toml for one local worker (state and work dirs under ``root``; its jobs' handoff/
    folders under ``handoff_dir``, when given)."""
    keys: dict[str, Any] = {
        "worker.id": spec.worker_id,
        "worker.state_dir": str(root / spec.worker_id / "state"),
        "worker.work_dir": str(root / spec.worker_id / "work"),
        "worker.port_offset": spec.port_offset,
        "gateway.address": gateway,
        "resources.cpu": spec.cpu,
        "resources.memory_gib": 8.0,
        "resources.storage_gib": 20.0,
        "resources.gpu": 0,
        "arbiter.strategy": spec.strategy,
        "telemetry.log_format": "json",
        **({"job.handoff_dir": str(handoff_dir)} if handoff_dir is not None else {}),
        **dict(spec.extra),
    }
    sections: dict[str, list[str]] = {}
    for key, value in keys.items():
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {_toml_value(value)}")
    text = "\n".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())
    if not spec.executor_classes:
        return text
    executors = [e for e in default_executors() if e.executor_class in spec.executor_classes]
    missing = set(spec.executor_classes) - {e.executor_class for e in executors}
    if missing:
        raise ValueError(f"no built-in executor of the classes {sorted(missing)}")
    # NOTE: a list of [[executors]] replaces the built-in list (tendril.core.config.WorkerConfig).
    for e in executors:
        text += f"\n[[executors]]\nclass = {_toml_value(e.executor_class)}\nname = {_toml_value(e.name)}\n"
        text += f"command = {_toml_value(e.command)}\n"
    return text


class LocalCluster:
    """Starts and stops the processes of a local network under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.procs: list[Proc] = []
        self.logs.mkdir(parents=True, exist_ok=True)
        self._handoff: Path | None = None

    @property
    def handoff_dir(self) -> Path | None:
        """The workers' job.handoff_dir: a folder of this cluster on /dev/shm (held in memory), made
        at first use and removed by :meth:`stop` with whatever a worker killed on the way left
        there; None where /dev/shm is not held in memory (the workers offer no handoff/ then)."""
        if self._handoff is None and memory_backed("/dev/shm") and os.access("/dev/shm", os.W_OK):
            self._handoff = Path(tempfile.mkdtemp(prefix="tendril-cluster-", dir="/dev/shm"))
        return self._handoff

    def spawn(self, name: str, args: Sequence[str], tier: int = 0) -> Proc:
        env = child_env()
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                list(args), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self.root
            )
        proc = Proc(name, popen, log, tier)
        self.procs.append(proc)
        return proc

    def start_gateway(self, listen: str, *, name: str = "gateway", redis_url: str = "") -> Proc:
        """A standalone gateway; with ``redis_url`` over that Redis (so several make one network)."""
        args = [sys.executable, "-m", "tendril.cli", "gateway", "run", "--listen", listen]
        if redis_url:
            args += ["--backend", "redis", "--redis-url", redis_url]
        return self.spawn(name, args)

    def start_data_node(self, folder: Path, listen: str, gateway: str) -> Proc:
        args = ["serve", str(folder), "--listen", listen, "--gateway", gateway]
        return self.spawn("data-node", [sys.executable, "-m", "tendril.data_node", *args], tier=1)

    def start_worker(self, spec: WorkerSpec, gateway: str) -> Proc:
        config = self.root / f"{spec.worker_id}.toml"
        config.write_text(worker_toml(spec, self.root, gateway, handoff_dir=self.handoff_dir))
        args = [sys.executable, "-m", "tendril.cli", "worker", "run", "--config", str(config)]
        return self.spawn(spec.worker_id, args, tier=2)

    def start_scheduler(self, job_toml: Path) -> Proc:
        args = [sys.executable, "-m", "tendril.scheduler", "run", "--config", str(job_toml)]
        return self.spawn("scheduler", [*args, "--log-format", "json"], tier=3)

    async def wait_serving(self, proc: Proc, addresses: Sequence[str], timeout: float) -> None:
        """Wait until every address serves; fail early (with the log's tail) when ``proc`` exits."""
        deadline = time.monotonic() + timeout
        pending = list(addresses)
        while pending:
            if proc.popen.poll() is not None:
                raise SchedulerError(
                    ErrorKind.UNAVAILABLE,
                    f"{proc.name} exited with code {proc.popen.returncode} while starting; "
                    f"its log ({proc.log}) ends:\n{proc.tail()}",
                    reason=SchedulerRunReason.START_FAILED,
                )
            if time.monotonic() > deadline:
                raise SchedulerError(
                    ErrorKind.DEADLINE_EXCEEDED,
                    f"{proc.name} did not serve {', '.join(pending)} within {timeout:.0f} s; "
                    f"its log ({proc.log}) ends:\n{proc.tail()}",
                    reason=SchedulerRunReason.START_TIMEOUT,
                )
            if await check_serving(pending[0], peer_id="demo"):
                pending.pop(0)
            else:
                await asyncio.sleep(0.1)

    def stop(self, timeout: float = STOP_SECONDS) -> list[str]:
        """Stop tier by tier (the scheduler releases its leases while the workers still run; the
        workers stop their jobs while the gateway still runs): SIGTERM a tier's processes, wait up
        to ``timeout`` for them, SIGKILL their groups. Returns what needed SIGKILL.

        Processes started by the cluster's processes in sessions of their own (executors) are
        found by their command line or working directory, which are under ``root``.
        """
        killed: list[str] = []
        for tier in sorted({p.tier for p in self.procs}, reverse=True):
            procs = [p for p in self.procs if p.tier == tier]
            for proc in procs:
                if proc.popen.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                if proc.popen.poll() is None:
                    killed.append(proc.name)
                # Its whole group goes, even children that outlived a clean exit.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5)
        for pid in processes_under(self.root):
            killed.append(f"pid {pid}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self._handoff is not None:
            shutil.rmtree(self._handoff, ignore_errors=True)
            self._handoff = None
        return killed


def processes_under(root: Path) -> list[int]:
    """Live processes (not zombies) whose command line names a path under ``root`` or whose
    working directory is under it (the cluster starts every process there)."""
    needle = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd").encode()
            if needle not in (entry / "cmdline").read_bytes() and not (cwd + b"/").startswith(needle + b"/"):
                continue
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found
