"""Executor command lines: placeholder substitution in argv (no shell, no gRPC here).

A configured command is a list of strings. Each of ``{SOCKET_PATH}``, ``{WORK_DIR}``,
``{JOB_JSON}`` and ``{PYTHON}`` is replaced wherever it appears inside an argument; any other
``{NAME}`` in capitals is a configuration mistake and is refused, so a typo never reaches the
executor as a literal. Other braces (JSON in an argument, say) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tendril.core.errors import ErrorKind
from tendril.job.errors import JobError, JobReason

PLACEHOLDERS = ("SOCKET_PATH", "WORK_DIR", "JOB_JSON", "PYTHON")
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


def render_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``template`` with every known placeholder replaced by ``values[name]``.

    Raises JobError FAILED_PRECONDITION for an empty command or an unknown placeholder.
    """
    if not template:
        raise JobError(
            ErrorKind.FAILED_PRECONDITION,
            "the executor's command is empty; give it an argv list in [[executors]] command",
            reason=JobReason.BAD_EXECUTOR_COMMAND,
        )
    missing = [name for name in PLACEHOLDERS if name not in values]
    if missing:
        raise ValueError(f"values lack placeholders {missing}")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:
            raise JobError(
                ErrorKind.FAILED_PRECONDITION,
                f"the executor's command uses unknown placeholder {{{name}}}; known ones are "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS),
                reason=JobReason.BAD_EXECUTOR_COMMAND,
                metadata={"placeholder": name},
            )
        return values[name]

    # NOTE: one pass with re.sub, so a substituted value that itself contains "{WORK_DIR}"
    # (a path can hold braces) is never expanded a second time.
    return [_PLACEHOLDER.sub(substitute, arg) for arg in template]
