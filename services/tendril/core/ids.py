"""Names that come from requests and end up in file names or keys: one definition of what is safe."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

JOB_ID_RULE = "1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
"""What :func:`is_valid_job_id` accepts, in the words every refusal uses."""


def is_valid_name(name: str) -> bool:
    """True for a safe file-like name: letters, digits, ``.``, ``_``, ``-``; no leading dot; <= 128."""
    return bool(_NAME.match(name))


def is_sha256_hex(value: str) -> bool:
    """True for a lowercase hex sha256 digest."""
    return bool(_SHA256.match(value))


def is_valid_job_id(job_id: str) -> bool:
    """True for a job id: :data:`JOB_ID_RULE`.

    # NOTE: one rule for every service a job id reaches (JobService's Dispatch, the
    # DataFetcher's OpenJob/NextSlice/CloseJob through the job's bridge), so a job one of them
    # accepts is never refused by the next. Files named after a job carry a prefix
    # (``job-<id>``), so ids such as ``..`` name no other path.
    """
    return bool(_JOB_ID.fullmatch(job_id))
