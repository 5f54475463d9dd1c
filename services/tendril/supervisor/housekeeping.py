"""The supervisor's housekeeping of ``<state_dir>/logs``: service logs rotate, saved job logs expire.

At start (before any service runs) and then periodically:

* each service's log ``<name>.log`` is rotated once it reaches ``supervisor.log_max_mib``
  (``supervisor.log_backups`` copies kept), every :data:`ROTATE_SECONDS`;
* the saved logs of ended jobs ``job-<id>.log`` (JobService writes them when a job ends) are
  deleted after ``job.keep_logs_days``, and the oldest beyond ``job.keep_logs_mib`` in total,
  every :data:`PRUNE_SECONDS`.

The parameter server applies the retention of its runs' state itself (it knows which runs are
over): ``paramserver.keep_closed_runs_days``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

from tendril.core import logfiles
from tendril.core.config import WorkerConfig
from tendril.core.logs import get_logger

log = get_logger("tendril.supervisor.housekeeping")

ROTATE_SECONDS = 30.0
PRUNE_SECONDS = 3600.0
DAY = 86400.0
MIB = 1024 * 1024
JOB_LOGS = "job-*.log"


class Housekeeping:
    """Rotation of ``service_logs`` and pruning of the saved job logs in ``logs_dir``."""

    def __init__(
        self,
        config: WorkerConfig,
        logs_dir: Path,
        service_logs: Iterable[Path],
        *,
        rotate_seconds: float = ROTATE_SECONDS,
        prune_seconds: float = PRUNE_SECONDS,
    ) -> None:
        self.logs_dir = logs_dir
        self.service_logs = list(service_logs)
        self.max_bytes = config.supervisor.log_max_mib * MIB
        self.backups = config.supervisor.log_backups
        self.keep_seconds = config.job.keep_logs_days * DAY
        self.keep_bytes = config.job.keep_logs_mib * MIB
        self.rotate_seconds = rotate_seconds
        self.prune_seconds = prune_seconds

    def rotate(self) -> int:
        """Rotate the service logs that reached the limit; how many were."""
        return sum(logfiles.rotate(path, self.max_bytes, self.backups) for path in self.service_logs)

    def prune(self) -> logfiles.Pruned:
        """Delete the saved job logs past their time or beyond the total size."""
        return logfiles.prune(
            self.logs_dir, JOB_LOGS, max_age_seconds=self.keep_seconds, max_total_bytes=self.keep_bytes
        )

    def once(self) -> None:
        """Both, now (at start)."""
        self.rotate()
        self.prune()

    async def run(self) -> None:
        """Rotate and prune at their intervals until cancelled (the file work runs in a thread)."""
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(self.rotate_seconds)
            try:
                await asyncio.to_thread(self.rotate)
                if time.monotonic() - last_prune >= self.prune_seconds:
                    last_prune = time.monotonic()
                    await asyncio.to_thread(self.prune)
            except Exception as exc:  # housekeeping must never stop the supervisor
                log.warning("housekeeping.failed", error=repr(exc))
