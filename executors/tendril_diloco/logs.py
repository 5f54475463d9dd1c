"""The executor's log: one JSON object per line on stderr (see :mod:`tendril_models.logs`)."""

from tendril_models.logs import EventLog, JsonLinesFormatter, configure

__all__ = ["EventLog", "JsonLinesFormatter", "configure"]
