"""`tendril worker run` → :func:`run_supervisor`."""

from __future__ import annotations

import asyncio

from tendril.core import tls
from tendril.core.config import WorkerConfig
from tendril.core.logs import configure
from tendril.supervisor.prepare import prepare
from tendril.supervisor.supervisor import Supervisor


def run_supervisor(config: WorkerConfig) -> int:
    """Run the worker until SIGTERM/SIGINT; the exit code (SupervisorError for bad setups)."""
    configure("supervisor", level=config.telemetry.log_level, fmt=config.telemetry.log_format)
    # NOTE: the supervisor's own channels (health checks, registration) use the worker's mTLS
    # setup too; a certificate that names another peer than the worker id stops it here.
    tls.configure(config.tls, expected_name=config.worker_id)
    prepared = prepare(config)
    try:
        return asyncio.run(Supervisor(prepared).run())
    finally:
        prepared.lock.close()
