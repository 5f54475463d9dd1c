"""What the ids and names in requests may be: one rule per kind of id, shared by every service.

Ids come from peers and end up in file names, database keys, log lines and error messages.
Each kind has one :class:`IdRule` here, with its limits in words; a service checks a request's
id with ``RULE.valid(value)`` (or :meth:`IdRule.problem`, which words the refusal) and raises
its own error type with its own reason. The limits (docs/ARCHITECTURE.md, "Ids and names"):

=================  ==========================================================  ======================
id                 rule                                                        checked by
=================  ==========================================================  ======================
job id             1-64 of ``A-Z a-z 0-9 . _ -``                               JobService, DataFetcher
run id             1-128 of ``A-Z a-z 0-9 . _ -``, first a letter or digit     ParameterServer, bridge,
                                                                               job.toml (≤ 48 there)
peer id            1-128 of ``A-Z a-z 0-9 . _ - : @``, first a letter or       worker.id, job.toml's
                   digit (worker, scheduler and owner ids)                     scheduler.id, push headers,
                                                                               expected workers, DataFetcher,
                                                                               Arbiter
name               1-128 of ``A-Z a-z 0-9 . _ -``, not starting with ``.``     data set ids, slice names
key                1-256 characters (opaque: never a path)                     lease, owner and request ids
                                                                               at LeaseService, JobService
stream id          1-200 printable ASCII characters, no space                  tensor stream headers
=================  ==========================================================  ======================

Whatever a refusal says about the value shows at most :data:`SHOWN_CHARS` characters of it
(:func:`shown`): a 1 MB id must not come back as a 1 MB error.
"""

from __future__ import annotations

import dataclasses
import re

SHOWN_CHARS = 64
"""Characters of a refused value an error message repeats (the rest is counted, not shown)."""


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters of the value with the length of the rest."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


@dataclasses.dataclass(frozen=True)
class IdRule:
    """One kind of id: the pattern it must match in full, and that rule in words."""

    noun: str  # "job id"
    pattern: re.Pattern[str]
    rule: str  # what a refusal says to use
    max_length: int

    def valid(self, value: str) -> bool:
        return len(value) <= self.max_length and self.pattern.fullmatch(value) is not None

    def problem(self, value: str, field: str) -> str | None:
        """None when ``value`` is valid, else the refusal: what was given (bounded) and the rule."""
        if self.valid(value):
            return None
        if not value:
            return f"{field} is empty; give a {self.noun}: {self.rule}"
        return f"{field} {shown(value)} is not a valid {self.noun}: use {self.rule}"


JOB_ID = IdRule("job id", re.compile(r"[A-Za-z0-9._-]{1,64}"), "1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'", 64)
"""A job's id. NOTE: one rule for every service a job id reaches (JobService's Dispatch, the
DataFetcher's OpenJob/NextSlice/CloseJob through the job's bridge), so a job one of them
accepts is never refused by the next. Files named after a job carry a prefix (``job-<id>``),
so ids such as ``..`` name no other path."""

RUN_ID = IdRule(
    "run id",
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
    "1-128 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
    128,
)
"""A DiLoCo run's id: the parameter server's key and folder name (``<state_dir>/paramserver/<run_id>``)."""

PEER_ID = IdRule(
    "peer id",
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"),
    "1-128 characters of A-Z, a-z, 0-9, '.', '_', '-', ':' or '@', starting with a letter or digit",
    128,
)
"""The id of a worker or a scheduler (a certificate's CN under mTLS), as requests name them."""

NAME = IdRule(
    "name",
    re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"),
    "1-128 characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting with '.' or '-'",
    128,
)
"""A file-like name: data set ids and slice names (each becomes one file or folder name)."""

KEY = IdRule("key", re.compile(r".{1,256}", re.DOTALL), "1-256 characters", 256)
"""An opaque id the services only compare and store (lease ids, owner ids, request ids)."""

STREAM_ID = IdRule(
    "stream id", re.compile(r"[\x21-\x7e]{1,200}"), "1-200 printable ASCII characters without spaces", 200
)
"""A tensor stream's id (reused when a stream resumes)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")

JOB_ID_RULE = JOB_ID.rule
"""What :func:`is_valid_job_id` accepts, in the words every refusal uses."""


def is_valid_name(name: str) -> bool:
    """True for a safe file-like name (:data:`NAME`)."""
    return NAME.valid(name)


def is_sha256_hex(value: str) -> bool:
    """True for a lowercase hex sha256 digest."""
    return _SHA256.fullmatch(value) is not None


def is_valid_job_id(job_id: str) -> bool:
    """True for a job id (:data:`JOB_ID`)."""
    return JOB_ID.valid(job_id)
