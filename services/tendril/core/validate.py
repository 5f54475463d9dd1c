"""Checks of the values a request carries, written once for every servicer.

A servicer makes one :class:`Checks` with its service's error type and checks each field it
reads before its core sees it::

    CHECK = Checks(JobError)
    timeout = CHECK.duration(request.timeout, "timeout", JobReason.BAD_TIMEOUT, maximum=MAX_JOB_TIMEOUT)

Every check raises the service's error, INVALID_ARGUMENT with the reason the servicer gives and
metadata ``field``, with a message that names the field, shows the value (bounded: a refused
value is never echoed whole, see :func:`tendril.core.ids.shown`) and says what is accepted:

* ids: :meth:`Checks.id` with a rule of :mod:`tendril.core.ids`;
* numbers (``double``/``float`` fields): :meth:`Checks.number`: finite (no NaN, no ±Inf), in range;
* ``google.protobuf.Duration``: :meth:`Checks.duration`: a valid Duration (``|nanos| < 10^9`` with
  the sign of ``seconds``, within ±10 000 years), not negative, at most ``maximum``;
* ``google.protobuf.Timestamp``: :meth:`Checks.timestamp`: a valid Timestamp (``0 <= nanos <
  10^9``, years 1 to 9999);
* enums: :meth:`Checks.enum` / :meth:`Checks.enums`: a value the proto enum declares (and not
  its ``*_UNSPECIFIED`` zero unless allowed);
* ``google.protobuf.Struct``: :meth:`Checks.struct`: every number finite (JSON has no NaN), as a dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp

from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.ids import IdRule

NANOS = 1_000_000_000
# NOTE: the ranges google/protobuf/duration.proto and timestamp.proto define: a value outside
# them is no Duration/Timestamp at all, whatever a field would allow.
MAX_DURATION_SECONDS = 315_576_000_000  # 10 000 years
MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


class Checks:
    """The request checks, raising ``error`` (a service's error type) INVALID_ARGUMENT."""

    def __init__(self, error: type[TendrilError]) -> None:
        self.error_type = error

    def invalid(self, field: str, message: str, reason: str) -> TendrilError:
        """The error for a bad ``field`` (to raise where a check of its own found one)."""
        return self.error_type(ErrorKind.INVALID_ARGUMENT, message, reason=reason, metadata={"field": field})

    def id(self, rule: IdRule, value: str, field: str, reason: str) -> str:
        """``value`` when it is a valid id of ``rule``'s kind."""
        problem = rule.problem(value, field)
        if problem is not None:
            raise self.invalid(field, problem, reason)
        return value

    def number(
        self,
        value: float,
        field: str,
        reason: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
        meaning: str = "",
    ) -> float:
        """``value`` when it is finite, >= ``minimum`` (> 0 when ``positive``) and <= ``maximum``.

        ``meaning`` (e.g. "0: do not wait") is added to the refusal so it says what values mean.
        """
        bounds = []
        if positive:
            bounds.append("> 0")
        if minimum is not None:
            bounds.append(f">= {minimum:g}")
        if maximum is not None:
            bounds.append(f"<= {maximum:g}")
        ok = math.isfinite(value)
        ok = ok and not (positive and value <= 0)
        ok = ok and not (minimum is not None and value < minimum)
        ok = ok and not (maximum is not None and value > maximum)
        if not ok:
            wanted = "a finite number" + (f" {' and '.join(bounds)}" if bounds else "")
            note = f" ({meaning})" if meaning else ""
            raise self.invalid(field, f"{field} must be {wanted}{note}, got {value!r}", reason)
        return value

    def duration(
        self, value: Duration, field: str, reason: str, *, maximum: float | None = None, meaning: str = ""
    ) -> float:
        """The seconds of a valid, non-negative Duration of at most ``maximum`` seconds."""
        seconds, nanos = value.seconds, value.nanos
        if not -NANOS < nanos < NANOS or (seconds and nanos and (seconds > 0) != (nanos > 0)):
            raise self.invalid(
                field,
                f"{field} is not a valid Duration: nanos {nanos} must be between -999999999 and 999999999 and have "
                f"the sign of seconds ({seconds}); carry whole seconds in seconds",
                reason,
            )
        if abs(seconds) > MAX_DURATION_SECONDS:
            raise self.invalid(
                field,
                f"{field} of {seconds} s is not a valid Duration (at most {MAX_DURATION_SECONDS} s, 10 000 years)",
                reason,
            )
        total = seconds + nanos / NANOS
        return self.number(total, field, reason, minimum=0.0, maximum=maximum, meaning=meaning)

    def timestamp(self, value: Timestamp, field: str, reason: str) -> float:
        """Seconds since the epoch of a valid Timestamp (years 1 to 9999)."""
        if not 0 <= value.nanos < NANOS:
            raise self.invalid(
                field,
                f"{field} is not a valid Timestamp: nanos {value.nanos} must be in 0..999999999 "
                "(carry whole seconds in seconds)",
                reason,
            )
        if not MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS:
            raise self.invalid(
                field,
                f"{field} of {value.seconds} s since the epoch is not a valid Timestamp (years 1 to 9999); "
                "give seconds since 1970-01-01T00:00:00Z",
                reason,
            )
        return value.seconds + value.nanos / NANOS

    def enum(self, value: int, enum: EnumTypeWrapper, field: str, reason: str, *, unspecified: bool = False) -> int:
        """``value`` when ``enum`` declares it (its zero, ``*_UNSPECIFIED``, only when ``unspecified``)."""
        declared = [v for v in enum.values() if v or unspecified]
        if value not in declared:
            names = ", ".join(enum.Name(v) for v in declared)
            raise self.invalid(field, f"{field} {value} is not one of {names}", reason)
        return value

    def enums(
        self, values: Iterable[int], enum: EnumTypeWrapper, field: str, reason: str, *, unspecified: bool = False
    ) -> list[int]:
        """Every value of a repeated enum field, each checked as :meth:`enum` does."""
        return [self.enum(v, enum, field, reason, unspecified=unspecified) for v in values]

    def struct(self, value: struct_pb2.Struct, field: str, reason: str) -> dict[str, Any]:
        """A Struct as a dict, when every number in it is finite (NaN and ±Inf have no JSON form)."""
        where = _non_finite(value, field)
        if where is not None:
            raise self.invalid(
                field, f"{where} is not a finite number; JSON numbers (and job configs) cannot be NaN or Inf", reason
            )
        return json_format.MessageToDict(value)


def _non_finite(message: struct_pb2.Struct | struct_pb2.ListValue | struct_pb2.Value, path: str) -> str | None:
    """The path of the first non-finite number under ``message`` (None when there is none)."""
    if isinstance(message, struct_pb2.Struct):
        for key, item in message.fields.items():
            found = _non_finite(item, f"{path}.{key if len(key) <= 32 else key[:32] + '...'}")
            if found:
                return found
        return None
    if isinstance(message, struct_pb2.ListValue):
        for index, item in enumerate(message.values):
            found = _non_finite(item, f"{path}[{index}]")
            if found:
                return found
        return None
    kind = message.WhichOneof("kind")
    if kind == "number_value":
        return None if math.isfinite(message.number_value) else path
    if kind == "struct_value":
        return _non_finite(message.struct_value, path)
    if kind == "list_value":
        return _non_finite(message.list_value, path)
    return None
