"""The worker's one Prometheus endpoint, served by the supervisor for all of its processes.

``GET http://<telemetry.metrics_listen>/metrics`` (port_offset applied) answers with the sum
of every child's values (``<state_dir>/run/metrics/``, see :mod:`tendril.core.metrics`)
plus the supervisor's own figures (service restarts, service up). The HTTP server runs in a
daemon thread: a scrape never waits on the supervisor's event loop.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from tendril.core import metrics
from tendril.core.config import split_address
from tendril.supervisor.errors import SupervisorError, SupervisorReason
from tendril.supervisor.ports import METRICS_KEY, setting_words


class MetricsEndpoint:
    """Serves ``/metrics`` from the moment :meth:`start` returns until :meth:`stop`."""

    def __init__(
        self,
        listen: str,
        directory: Path,
        figures: Callable[[], Mapping[str, metrics.ServiceFigures]],
        *,
        port_offset: int = 0,
    ) -> None:
        self.listen = listen
        self.directory = directory
        self.port_offset = port_offset
        self._figures = figures
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """host:port actually bound (the port filled in when 0 was asked)."""
        host, port = split_address(self.listen)
        if self._server is not None:
            port = int(self._server.server_address[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def child_env(self) -> dict[str, str]:
        """Environment every child needs from its start so that its values reach this endpoint."""
        return metrics.child_env(self.directory)

    def start(self) -> None:
        """Empty the value directory and listen; SupervisorError naming the config key on failure."""
        metrics.prepare_multiprocess_dir(self.directory)
        registry = metrics.multiprocess_registry(self.directory, metrics.SupervisorCollector(self._figures))
        host, port = split_address(self.listen)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            code = exc.errno or errno.EADDRINUSE
            what = "is in use" if code == errno.EADDRINUSE else f"cannot be bound: {os.strerror(code)}"
            setting = setting_words(METRICS_KEY, self.port_offset)
            raise SupervisorError(
                f"the metrics endpoint {self.listen} {what} ({setting}); stop the other process or choose another "
                "address",
                reason=SupervisorReason.PORT_IN_USE if code == errno.EADDRINUSE else SupervisorReason.CANNOT_LISTEN,
            ) from exc

    def process_dead(self, pid: int) -> None:
        """A child ended: its live gauges stop counting (its counters are kept)."""
        metrics.mark_process_dead(self.directory, pid)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
