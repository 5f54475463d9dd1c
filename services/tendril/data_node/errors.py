"""The one error type of the data node (prepare and serve)."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class DataNodeError(TendrilError):
    """Bad data set input, a missing or damaged data set, or a bad FetchSlice request."""

    service = "data_node"
