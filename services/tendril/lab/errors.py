"""The lab's one error type and its reasons (none leaves the process: the lab is a tool)."""

from __future__ import annotations

import enum

from tendril.core.errors import ErrorKind, TendrilError

__all__ = ["ErrorKind", "LabError", "LabReason"]


class LabReason(enum.StrEnum):
    """Why the lab could not build, run or measure its network."""

    NO_NAMESPACES = "NO_NAMESPACES"  # not root, no `ip`/`tc` (`iptables` for latency), or no network namespace
    COMMAND_FAILED = "COMMAND_FAILED"  # an `ip` or `tc` command that builds the network failed
    NO_SUBNET = "NO_SUBNET"  # every /24 of 198.18.0.0/15 is already on an interface of this host
    BAD_SETTINGS = "BAD_SETTINGS"  # a rate, worker count or host name the lab cannot use
    MEASURE_FAILED = "MEASURE_FAILED"  # the link measurement's sender or receiver failed


class LabError(TendrilError):
    """Something the lab cannot do (see ``reason``)."""

    service = "lab"

    def __init__(self, kind: ErrorKind, message: str, *, reason: LabReason) -> None:
        super().__init__(kind, message, reason=reason)
