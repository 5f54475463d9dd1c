"""What `tendril certs init` and `tendril certs issue` do, as functions (the CLI only prints)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tendril.certs.authority import (
    DEFAULT_CA_DAYS,
    DEFAULT_NODE_DAYS,
    create_ca,
    default_ca_name,
    issue_node,
)
from tendril.certs.names import check_name, subject_alt_names
from tendril.certs.store import CertDir, PairPaths
from tendril.core.config import TlsSection


@dataclasses.dataclass(frozen=True)
class Issued:
    """Files written for one node certificate, with the CA a peer needs beside them."""

    name: str
    ca_file: Path
    paths: PairPaths
    sans: list[str]

    def tls(self) -> TlsSection:
        """The config section that makes a peer use these files."""
        return TlsSection(ca_file=str(self.ca_file), cert_file=str(self.paths.cert), key_file=str(self.paths.key))

    def tls_section(self) -> str:
        """The ``[tls]`` table that makes a worker (or any peer) use these files."""
        section = self.tls()
        # NOTE: a JSON string is a valid TOML basic string (quotes and backslashes escaped).
        lines = [f"{field} = {json.dumps(getattr(section, field))}" for field in TlsSection.FILE_KEYS]
        return "[tls]\n" + "\n".join(lines) + "\n"


def init_ca(directory: Path, *, days: int = DEFAULT_CA_DAYS, name: str = "", force: bool = False) -> PairPaths:
    """Create a private CA in ``directory``; refuses to replace an existing one without ``force``."""
    store = CertDir(directory)
    pair = create_ca(name or default_ca_name(), days=days)
    store.write_pair(store.ca, pair, force=force)
    return store.ca


def issue(
    directory: Path,
    name: str,
    *,
    sans: list[str] | None = None,
    days: int = DEFAULT_NODE_DAYS,
    force: bool = False,
) -> Issued:
    """Issue ``<name>.pem``/``<name>.key`` (CN = name) signed by the CA in ``directory``."""
    check_name(name)
    names = subject_alt_names(sans)
    store = CertDir(directory)
    pair = issue_node(store.read_ca(), name, names, days=days)
    paths = store.node(name)
    store.write_pair(paths, pair, force=force)
    return Issued(
        name, store.ca.cert.resolve(), PairPaths(paths.cert.resolve(), paths.key.resolve()), [str(s) for s in names]
    )
