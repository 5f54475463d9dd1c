"""Names, SANs and the default directory of the certificate tools."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from tendril.certs.errors import CertError, CertReason
from tendril.core.errors import ErrorKind

# NOTE: peer ids are ids everywhere else in Tendril (worker ids, scheduler ids): the same
# character set keeps a certificate's CN usable as a file name and as a peer id.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
RESERVED_NAMES = frozenset({"ca"})
# Every node certificate is valid for the loopback names: a worker's own services call each
# other on 127.0.0.1, and a single-host network (tests, the demo) dials localhost.
LOOPBACK_SANS = ("localhost", "127.0.0.1")


def default_dir() -> Path:
    """``$XDG_CONFIG_HOME/tendril/certs`` or ``~/.config/tendril/certs``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tendril" / "certs"


def check_name(name: str) -> str:
    """A node name (the certificate's CN and the peer id) or CertError saying what is allowed."""
    if not _NAME.match(name):
        raise CertError(
            ErrorKind.INVALID_ARGUMENT,
            f"name {name!r} cannot be a peer id: use 1-64 of [A-Za-z0-9._-], starting with a letter or digit "
            "(the worker id, scheduler id or service name the certificate stands for)",
            reason=CertReason.BAD_NAME,
        )
    if name.lower() in RESERVED_NAMES:
        raise CertError(
            ErrorKind.INVALID_ARGUMENT,
            f"name {name!r} is the certificate authority's own file name; pick another name",
            reason=CertReason.RESERVED_NAME,
        )
    return name


def parse_san(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    """One SAN: an IP address, or a DNS name (``*.example.org`` allowed), else CertError."""
    text = value.strip().strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    labels = text.split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if not text or len(text) > 253 or not labels or not all(_DNS_LABEL.match(label) for label in labels):
        raise CertError(
            ErrorKind.INVALID_ARGUMENT,
            f"--san {value!r} is neither an IP address nor a DNS name; give the host name or IP peers dial",
            reason=CertReason.BAD_SAN,
        )
    return text.lower()


def subject_alt_names(extra: list[str] | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address | str]:
    """The loopback names plus ``extra``, parsed, without duplicates, in order."""
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address | str] = []
    for value in [*LOOPBACK_SANS, *(extra or [])]:
        san = parse_san(value)
        if san not in out:
            out.append(san)
    return out
