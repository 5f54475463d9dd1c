"""The lab: a Tendril network on several "hosts" (network namespaces) over shaped links.

``with Lab(root, LabSettings(workers=2, rate_mbit=200)) as lab:`` builds the network
(:mod:`tendril.lab.net`), issues a CA and one certificate per host (SAN = the host's address)
under ``root/pki``, and on the way out — normal end, exception, SIGINT/SIGTERM (handlers) or
interpreter exit (atexit) — stops every process it started and removes every namespace, link
and qdisc. Peers are started with the ``start_*`` methods; each binds its own host's address
and advertises it, so every call between peers crosses the shaped links.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from tendril.certs.ops import Issued, init_ca, issue
from tendril.core import tls
from tendril.core.config import WorkerConfig, shift_port, split_address
from tendril.lab.errors import ErrorKind, LabError, LabReason
from tendril.lab.net import Host, Network, run_ip
from tendril.lab.relay import MARK
from tendril.scheduler.cluster import LocalCluster, Proc, WorkerSpec, worker_toml

START_SECONDS = 120.0
GATEWAY = "gateway"
DATA = "data"
SCHEDULER = "scheduler"
PARAMSERVER = "paramserver"  # the host (and the worker's id) of the parameter server when it has its own
# NOTE: the parameter server's host runs a worker that offers only these executors, so it never
# takes a training job, and the training workers offer their whole machine, so none of them can
# take the parameter server's or the eval job's lease beside its training job: the placement does
# not depend on which offer arrives first.
PARAMSERVER_EXECUTORS = ("aggregate", "eval")
# NOTE: every host is a namespace of its own, so these ports cannot collide with anything on the
# machine; they are still kept off the default ones (50050-50056, 9464) that a worker on the
# machine itself may hold in its own namespace, which keeps logs unambiguous.
PORT_SHIFT = 1000
GATEWAY_PORT = 51050
DATA_NODE_PORT = 51070
SCHEDULER_PORT = 51080
MEASURE_PORT = 51090
RELAY_PORT = 51099
OBSERVER_ID = "lab-observer"


@dataclasses.dataclass(frozen=True)
class LabSettings:
    """The shape of a lab."""

    workers: int = 3
    rate_mbit: float = 100.0  # every host's link, each direction
    tls: bool = True  # mTLS between every pair of peers, one certificate per host
    latency_ms: float = 0.0  # added one-way delay between hosts (the relay, tendril.lab.relay); RTT + 2x this
    worker_extra: tuple[tuple[str, Any], ...] = ()  # more worker.toml keys for every worker
    # The relay's window per connection and direction, KiB (0: 16 MiB): one connection then
    # carries at most window / latency_ms, like a TCP connection with a window of twice that.
    relay_window_kib: int = 0
    # A host of its own for the parameter server (and the eval job), instead of a training
    # worker's machine; its link, each direction, is ``paramserver_rate_mbit`` (0: workers ×
    # rate_mbit, the sum of the links whose pushes and pulls it carries).
    paramserver_host: bool = False
    paramserver_rate_mbit: float = 0.0

    @property
    def paramserver_link_mbit(self) -> float:
        """The parameter server host's link rate (when it has a host)."""
        return self.paramserver_rate_mbit or self.workers * self.rate_mbit


def worker_name(index: int) -> str:
    return f"worker-{index}"


class Lab:
    """One lab; use as a context manager (or call ``open`` and ``close``)."""

    def __init__(self, root: Path, settings: LabSettings | None = None, *, handle_signals: bool = True) -> None:
        self.root = root.resolve()
        self.settings = settings or LabSettings()
        if not 1 <= self.settings.workers <= 64:
            raise LabError(ErrorKind.INVALID_ARGUMENT, "a lab has 1-64 workers", reason=LabReason.BAD_SETTINGS)
        if not 0 <= self.settings.latency_ms <= 1000:
            raise LabError(ErrorKind.INVALID_ARGUMENT, "latency_ms must be 0-1000", reason=LabReason.BAD_SETTINGS)
        if self.settings.paramserver_rate_mbit < 0:
            raise LabError(
                ErrorKind.INVALID_ARGUMENT,
                "paramserver_rate_mbit must be 0 (workers x rate_mbit) or a rate in Mbit/s",
                reason=LabReason.BAD_SETTINGS,
            )
        rate = self.settings.rate_mbit
        names = [GATEWAY, DATA, SCHEDULER, *(worker_name(i) for i in range(self.settings.workers))]
        links = [(name, rate) for name in names]
        if self.settings.paramserver_host:
            links.append((PARAMSERVER, self.settings.paramserver_link_mbit))
        self.network = Network(links)
        self.cluster = LocalCluster(self.root)
        self.pki = self.root / "pki"
        self.handle_signals = handle_signals
        self._previous: dict[int, Any] = {}
        self._closing = False
        self._closed = False
        self._tls_configured = False

    # ---- life cycle -------------------------------------------------------------------------

    @property
    def lab_id(self) -> str:
        return self.network.lab_id

    def open(self) -> Lab:
        """Build the network and the certificates; install the clean-up hooks first."""
        atexit.register(self.close)
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        try:
            self.network.create()
            if self.settings.latency_ms > 0:
                self._add_latency()
            if self.settings.tls:
                init_ca(self.pki, force=True)
                # NOTE: this process health-checks the peers; under mTLS it needs a certificate too.
                tls.configure(issue(self.pki, OBSERVER_ID, force=True).tls())
                self._tls_configured = True
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Lab:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._closing:  # a second Ctrl-C while cleaning up: let the clean-up finish
            return
        self.close()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def close(self) -> list[str]:
        """Stop every process (SIGTERM, then SIGKILL), remove namespaces, links and qdiscs.
        Safe to call again; returns what had to be killed or removed."""
        if self._closed or self._closing:
            return []
        self._closing = True
        removed: list[str] = []
        try:
            removed += self.cluster.stop(timeout=10.0)
            removed += self.network.destroy()
        finally:
            if self._tls_configured:
                tls.configure(None)
                self._tls_configured = False
            for sig, previous in self._previous.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(sig, previous)
            self._previous.clear()
            atexit.unregister(self.close)
            self._closed = True
            self._closing = False
        return removed

    def _add_latency(self) -> None:
        """On every host: the relay, and the iptables rules that send the host's connections to
        the other hosts through it (see :mod:`tendril.lab.relay`)."""
        if shutil.which("iptables") is None:
            raise LabError(
                ErrorKind.FAILED_PRECONDITION, "latency needs `iptables` (nat table)", reason=LabReason.NO_NAMESPACES
            )
        subnet = str(self.network.subnet)
        procs: list[Proc] = []
        for host in self.network.hosts.values():
            nat = ["ip", "netns", "exec", host.netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp"]
            run_ip([*nat, "-d", host.ip, "-j", "RETURN"])
            redirect = ["-j", "REDIRECT", "--to-ports", str(RELAY_PORT)]
            run_ip([*nat, "-d", subnet, "-m", "mark", "!", "--mark", str(MARK), *redirect])
            argv = [sys.executable, "-m", "tendril.lab.relay", "--port", str(RELAY_PORT)]
            procs.append(
                self.spawn(
                    host.name,
                    f"relay-{host.name}",
                    [
                        *argv,
                        "--delay-ms",
                        str(self.settings.latency_ms),
                        "--window-kib",
                        str(self.settings.relay_window_kib),
                    ],
                    tier=-1,
                )
            )
        deadline = time.monotonic() + START_SECONDS
        for proc in procs:
            while "relay.ready" not in proc.tail(5):
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    raise LabError(
                        ErrorKind.INTERNAL,
                        f"{proc.name} did not start; its log ({proc.log}) ends:\n{proc.tail()}",
                        reason=LabReason.COMMAND_FAILED,
                    )
                time.sleep(0.05)

    # ---- hosts --------------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        return self.network.hosts[name]

    @property
    def worker_hosts(self) -> list[Host]:
        return [self.host(worker_name(i)) for i in range(self.settings.workers)]

    def run(self, host: str, argv: Sequence[str], *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host``'s namespace and wait for it."""
        return subprocess.run(
            self.host(host).exec_argv(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def spawn(self, host: str, name: str, argv: Sequence[str], tier: int = 0) -> Proc:
        """Start ``argv`` inside ``host``'s namespace as a process of the lab's cluster (own
        session, log under root/logs, stopped by ``close``)."""
        return self.cluster.spawn(name, self.host(host).exec_argv(argv), tier=tier)

    def certificate(self, peer_id: str, host: str) -> Issued | None:
        """The certificate of ``peer_id`` running on ``host`` (SAN: its address); None without TLS."""
        if not self.settings.tls:
            return None
        return issue(self.pki, peer_id, sans=[self.host(host).ip], force=True)

    def tls_flags(self, peer_id: str, host: str) -> list[str]:
        issued = self.certificate(peer_id, host)
        if issued is None:
            return []
        return [
            "--tls-ca",
            str(issued.ca_file),
            "--tls-cert",
            str(issued.paths.cert),
            "--tls-key",
            str(issued.paths.key),
        ]

    # ---- peers --------------------------------------------------------------------------------

    @property
    def gateway_address(self) -> str:
        return f"{self.host(GATEWAY).ip}:{GATEWAY_PORT}"

    @property
    def data_node_address(self) -> str:
        return f"{self.host(DATA).ip}:{DATA_NODE_PORT}"

    @property
    def scheduler_address(self) -> str:
        return f"{self.host(SCHEDULER).ip}:{SCHEDULER_PORT}"

    async def start_gateway(self) -> str:
        listen = self.gateway_address
        argv = [sys.executable, "-m", "tendril.cli", "gateway", "run", "--listen", listen, "--log-format", "json"]
        proc = self.spawn(GATEWAY, "gateway", [*argv, *self.tls_flags("gateway", GATEWAY)])
        await self.cluster.wait_serving(proc, [listen], START_SECONDS)
        return listen

    async def start_data_node(self, folder: Path) -> str:
        listen = self.data_node_address
        argv = [sys.executable, "-m", "tendril.data_node", "serve", str(folder), "--listen", listen]
        argv += ["--advertise", listen, "--gateway", self.gateway_address]
        proc = self.spawn(DATA, "data-node", [*argv, *self.tls_flags("data-node", DATA)], tier=1)
        await self.cluster.wait_serving(proc, [listen], START_SECONDS)
        return listen

    def worker_keys(self, index: int) -> dict[str, Any]:
        """The worker.toml keys that put worker ``index`` on its host and make it advertise the
        host's address. Even-numbered workers bind that address; odd-numbered ones bind every
        address (0.0.0.0), so that the address peers see comes from ``worker.advertise_host``
        alone — the two ways a worker is set up on a real host. Metrics stay on the namespace's
        own loopback."""
        return self._host_keys(worker_name(index), bind_all=index % 2 == 1)

    def _host_keys(self, name: str, *, bind_all: bool) -> dict[str, Any]:
        """The worker.toml keys of the worker ``name`` on the host of the same name."""
        host = self.host(name)
        bind = "0.0.0.0" if bind_all else host.ip
        defaults = WorkerConfig()
        keys: dict[str, Any] = {"worker.advertise_host": host.ip}
        for section in WorkerConfig.SERVICE_SECTIONS:
            port = split_address(shift_port(getattr(defaults, section).listen, PORT_SHIFT))[1]
            keys[f"{section}.listen"] = f"{bind}:{port}"
        data_port = split_address(shift_port(defaults.paramserver.data_listen, PORT_SHIFT))[1]
        keys["paramserver.data_listen"] = f"{bind}:{data_port}"
        keys["telemetry.metrics_listen"] = shift_port(defaults.telemetry.metrics_listen, PORT_SHIFT)
        issued = self.certificate(name, host.name)
        if issued is not None:
            section = issued.tls()
            keys |= {f"tls.{field}": getattr(section, field) for field in section.FILE_KEYS}
        return keys

    def _addresses(self, name: str, keys: dict[str, Any]) -> list[str]:
        """Where other hosts reach the services of the worker ``name`` set up with ``keys``."""
        ip = self.host(name).ip
        return [f"{ip}:{split_address(keys[f'{s}.listen'])[1]}" for s in WorkerConfig.SERVICE_SECTIONS]

    async def start_workers(self, *, flexible: int = 1) -> list[WorkerSpec]:
        """Start every worker (supervised, on its host); worker-0 .. worker-(flexible-1) use the
        ``flexible`` strategy so that one can host the parameter server beside a training job.

        With ``paramserver_host`` a worker on that host offers only the parameter server's and
        the eval job's executors, and every training worker offers its whole machine (``flexible``
        is not used): the parameter server and the eval job run there."""
        specs: list[WorkerSpec] = []
        waits: list[tuple[Proc, list[str]]] = []
        own_host = self.settings.paramserver_host
        for index in range(self.settings.workers):
            # NOTE: the keys once per worker: each call issues the host's certificate anew, which
            # must not happen while the worker reads it.
            keys = self.worker_keys(index)
            strategy = "flexible" if index < flexible and not own_host else "whole"
            specs.append(
                WorkerSpec(worker_name(index), 0, strategy, extra=tuple(keys.items()) + self.settings.worker_extra)
            )
            waits.append((self._start_worker(specs[-1]), self._addresses(worker_name(index), keys)))
        if own_host:
            keys = self._host_keys(PARAMSERVER, bind_all=False)
            extra = tuple(keys.items()) + self.settings.worker_extra
            specs.append(WorkerSpec(PARAMSERVER, 0, "flexible", extra=extra, executor_classes=PARAMSERVER_EXECUTORS))
            waits.append((self._start_worker(specs[-1]), self._addresses(PARAMSERVER, keys)))
        for proc, addresses in waits:
            await self.cluster.wait_serving(proc, addresses, START_SECONDS)
        return specs

    def _start_worker(self, spec: WorkerSpec) -> Proc:
        config = self.root / f"{spec.worker_id}.toml"
        config.write_text(worker_toml(spec, self.root, self.gateway_address, handoff_dir=self.cluster.handoff_dir))
        argv = [sys.executable, "-m", "tendril.cli", "worker", "run", "--config", str(config)]
        return self.spawn(spec.worker_id, spec.worker_id, argv, tier=2)

    def start_scheduler(self, job_toml: Path, peer_id: str) -> Proc:
        argv = [sys.executable, "-m", "tendril.scheduler", "run", "--config", str(job_toml), "--log-format", "json"]
        return self.spawn(SCHEDULER, "scheduler", [*argv, *self.tls_flags(peer_id, SCHEDULER)], tier=3)

    # ---- links --------------------------------------------------------------------------------

    async def measure(self, sender: str, receiver: str, seconds: float = 2.0) -> dict[str, float]:
        """A raw TCP transfer of ``seconds`` from ``sender`` to ``receiver`` (host names): bytes,
        seconds and Mbit/s as the receiver counted them, and the median round trip time before
        it (see :mod:`tendril.lab.measure`)."""
        listen = f"{self.host(receiver).ip}:{MEASURE_PORT}"
        tool = [sys.executable, "-m", "tendril.lab.measure"]
        recv = await asyncio.create_subprocess_exec(
            *self.host(receiver).exec_argv([*tool, "recv", "--listen", listen, "--timeout", str(seconds + 20)]),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert recv.stdout is not None
            ready = await asyncio.wait_for(recv.stdout.readline(), 30.0)
            if ready.strip() != b"ready":
                raise LabError(
                    ErrorKind.INTERNAL,
                    f"the receiver on {receiver} did not start: {(await recv.stderr.read()).decode()[-500:]}"
                    if recv.stderr is not None
                    else f"the receiver on {receiver} did not start",
                    reason=LabReason.MEASURE_FAILED,
                )
            send = await asyncio.create_subprocess_exec(
                *self.host(sender).exec_argv([*tool, "send", "--to", listen, "--seconds", str(seconds)]),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            send_out, send_err = await asyncio.wait_for(send.communicate(), seconds + 30)
            out, err = await asyncio.wait_for(recv.communicate(), 30.0)
            if send.returncode != 0 or recv.returncode != 0:
                raise LabError(
                    ErrorKind.INTERNAL,
                    f"link measurement {sender} -> {receiver} failed: {(send_err + err).decode()[-500:]}",
                    reason=LabReason.MEASURE_FAILED,
                )
        finally:
            if recv.returncode is None:
                recv.kill()
                await recv.wait()
        result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
        result["rtt_ms"] = json.loads(send_out.decode().strip().splitlines()[-1])["rtt_ms"]
        return result
