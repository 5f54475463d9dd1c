"""Names that come from requests and end up in file names or keys: one definition of what is safe."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_valid_name(name: str) -> bool:
    """True for a safe file-like name: letters, digits, ``.``, ``_``, ``-``; no leading dot; <= 128."""
    return bool(_NAME.match(name))


def is_sha256_hex(value: str) -> bool:
    """True for a lowercase hex sha256 digest."""
    return bool(_SHA256.match(value))
