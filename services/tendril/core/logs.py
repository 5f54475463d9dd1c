"""Structured logging: JSON lines when stderr is not a TTY, readable console lines when it is.

Every service calls :func:`configure` once at start; code binds job_id/lease_id/peer with
``structlog.contextvars.bound_contextvars`` (or ``log.bind``) so each line carries them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_configured = False


class UnfailingStream:
    """A text stream whose writes never raise: a log line that cannot be written is counted, not raised.

    NOTE: a service's log is a file on the state dir's disk. When that disk is full, every
    ``log.*`` call would raise OSError wherever it runs, in an ``except`` block too, and end
    the loop it is in (the Arbiter's decision loop ended that way and the worker silently left
    the network). Losing lines is the lesser harm.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lost = 0  # writes that failed

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):
            self.lost += 1
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.lost += 1

    def isatty(self) -> bool:
        return self.stream.isatty()


def configure(service: str, *, level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog for this process. ``fmt`` is "auto", "json" or "console"."""
    global _configured
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=UnfailingStream(sys.stderr)),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    _configured = True


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A logger; ``bound`` values appear on every line it writes."""
    log = structlog.get_logger(name) if name else structlog.get_logger()
    return log.bind(**bound) if bound else log
