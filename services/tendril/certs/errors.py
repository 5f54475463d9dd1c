"""The certificate tools' one error type."""

from __future__ import annotations

from tendril.core.errors import TendrilError


class CertError(TendrilError):
    """A certificate directory, name, SAN or existing file that the tools cannot work with."""

    service = "certs"
