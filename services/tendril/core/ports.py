"""Free TCP ports on 127.0.0.1 for servers this process is about to start (a local cluster, the
demo, tests, benches): one picker per process, so that no two picks collide before their servers
bind.

NOTE: a port from ``bind(("127.0.0.1", 0))`` is free only until its socket closes, and the kernel
picks the next ``bind(0)`` or outgoing connection from the same range (``ip_local_port_range``):
a worker's ports picked that way, then one more for a data node before the worker had bound its
own, gave the data node one of the worker's ports, and the worker refused to start. Ports here
are drawn at random from the :data:`SPAN` ports just below that range, where neither ``bind(0)``
nor ``connect()`` lands, each checked by binding it as a server would
(``core.server.check_bindable``), and none is handed out twice by this process
until half of them have been. At random, not in order: a worker's ports shifted by
``worker.port_offset`` would land on its neighbours' otherwise, and two processes that pick at
once (a demo and a test) stay apart.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

from tendril.core.server import check_bindable

SPAN = 20_000  # ports drawn from just below the ephemeral range
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default ip_local_port_range


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out to outgoing connections and to port-0 binds."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return low, high


class PortPicker:
    """Hands out ports of ``ports`` that are free now and that no other pick of it handed out."""

    def __init__(self, ports: range) -> None:
        self.ports = ports
        self._given: set[int] = set()
        self._lock = threading.Lock()

    def _start_over_if_full(self, n: int) -> None:
        if len(self._given) + n > len(self.ports) // 2:
            self._given.clear()  # the servers of those picks are long up (or gone)

    def _kernel_pick(self) -> int:
        """Where there is no range below the ephemeral one: the kernel's pick, not repeated."""
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self._given:
                return port

    def take(self, n: int) -> list[int]:
        """``n`` distinct ports, each free now and never handed out before."""
        with self._lock:
            self._start_over_if_full(n)
            picked: list[int] = []
            for _ in range(64 * n if self.ports else 0):
                if len(picked) == n:
                    break
                port = random.choice(self.ports)
                if port not in self._given and port not in picked and check_bindable(f"127.0.0.1:{port}") == 0:
                    picked.append(port)
            while len(picked) < n:
                port = self._kernel_pick()
                if port not in picked:
                    picked.append(port)
            self._given.update(picked)
            return picked

    def claim(self, ports: Iterable[int]) -> bool:
        """Mark ``ports`` (found free by the caller) as handed out; False, marking none, when a
        pick of this picker already has one of them."""
        wanted = set(ports)
        with self._lock:
            self._start_over_if_full(len(wanted))
            if wanted & self._given:
                return False
            self._given.update(wanted)
            return True


def _below_ephemeral() -> range:
    low = ephemeral_range()[0]
    start = max(1024, low - SPAN)
    return range(start, low) if low - start >= 1000 else range(0)


PICKER = PortPicker(_below_ephemeral())


def free_port() -> int:
    """A TCP port on 127.0.0.1, free now, that no other pick of this process got."""
    return PICKER.take(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1, free now, that no other pick of this process got."""
    return PICKER.take(n)


def free_address() -> str:
    """``127.0.0.1:<port>`` of :func:`free_port`."""
    return f"127.0.0.1:{free_port()}"
