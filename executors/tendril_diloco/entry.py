"""What both executors of this package (the trainer and the held-out evaluation) do around their
work: :func:`tendril_models.entry.run`, with :class:`ExecutorError` reported as a failure."""

from __future__ import annotations

import argparse

from tendril_diloco.errors import ExecutorError
from tendril_models.entry import EXIT_SIGTERM, Body
from tendril_models.entry import run as run_executor
from tendril_models.logs import EventLog

__all__ = ["EXIT_SIGTERM", "Body", "run"]


def run(name: str, args: argparse.Namespace, log: EventLog, body: Body) -> int:
    """Run ``body(args, token, log)`` as the job's executor ``name``; the process's exit code."""
    return run_executor(name, args, log, body, failures=(ExecutorError,))
