"""The certificate tools' one error type and its reasons."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError

__all__ = ["CertError", "CertReason"]


class CertReason(enum.StrEnum):
    """Why `tendril certs` refused; the command exits with the error."""

    BAD_DAYS = "BAD_DAYS"  # --days is below 1
    BAD_NAME = "BAD_NAME"  # the peer id cannot be a certificate name
    RESERVED_NAME = "RESERVED_NAME"  # the peer id is a name the CA's own files use
    BAD_SAN = "BAD_SAN"  # a --san is neither a DNS name nor an IP address
    CA_MISSING = "CA_MISSING"  # the directory has no CA (run `tendril certs init`)
    CA_UNREADABLE = "CA_UNREADABLE"  # the CA files cannot be parsed
    CA_KEY_MISMATCH = "CA_KEY_MISMATCH"  # ca.key is not the key of ca.pem
    NOT_A_CA = "NOT_A_CA"  # ca.pem is not a CA certificate
    EXISTS = "EXISTS"  # the file to write exists (--force replaces it)
    DIR_UNWRITABLE = "DIR_UNWRITABLE"  # the certificate directory cannot be written


class CertError(TendrilError):
    """A certificate directory, name, SAN or existing file that the tools cannot work with."""

    service = "certs"

    def __init__(
        self, kind: ErrorKind, message: str, *, reason: CertReason, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)
