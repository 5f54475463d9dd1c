"""An executor's log: one JSON object per line on stderr (JobService keeps it as executor.log).

Shared by the executors built on this package (the DiLoCo trainer, the held-out evaluation,
the inference executor). Each line is ``{"event", "level", "timestamp", "service", ...fields}``, written through the
standard library's ``logging``.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

LOGGER_NAME = "tendril_executor"


class JsonLinesFormatter(logging.Formatter):
    """Renders a record logged by :class:`EventLog` as one JSON line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat()
        line: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "timestamp": stamp,
            "service": self.service,
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class EventLog:
    """``log.info("round.done", round=3, loss=2.1)``: an event name and its fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def info(self, event: str, **fields: Any) -> None:
        self._logger.info(event, extra={"fields": fields})

    def warning(self, event: str, **fields: Any) -> None:
        self._logger.warning(event, extra={"fields": fields})

    def error(self, event: str, **fields: Any) -> None:
        self._logger.error(event, extra={"fields": fields})


def configure(service: str) -> EventLog:
    """Send this executor's events to stderr as JSON lines; returns the log to write them with."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter(service))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return EventLog(logger)
