"""The certificate directory: where each file lives, reading it, and writing new files safely.

Keys are created 0600 from their first byte (never chmod-ed down after a write), the directory
0700. A set of files appears together or not at all, and an existing file is replaced only
when the caller says ``force``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path

from tendril.certs.authority import KeyPair
from tendril.certs.errors import CertError, CertReason
from tendril.core.errors import ErrorKind

CERT_MODE = 0o644
KEY_MODE = 0o600
DIR_MODE = 0o700


@dataclasses.dataclass(frozen=True)
class PairPaths:
    """Where one certificate and its key live."""

    cert: Path
    key: Path


class CertDir:
    """A directory holding a CA and the node certificates it issued."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    @property
    def ca(self) -> PairPaths:
        return PairPaths(self.path / "ca.pem", self.path / "ca.key")

    def node(self, name: str) -> PairPaths:
        return PairPaths(self.path / f"{name}.pem", self.path / f"{name}.key")

    def read_ca(self) -> KeyPair:
        paths = self.ca
        missing = [p for p in (paths.cert, paths.key) if not p.is_file()]
        if missing:
            raise CertError(
                ErrorKind.FAILED_PRECONDITION,
                f"no CA in {self.path} ({', '.join(str(p) for p in missing)} missing); "
                f"create one with `tendril certs init --dir {self.path}` or pass --dir",
                reason=CertReason.CA_MISSING,
            )
        return KeyPair(paths.cert.read_bytes(), paths.key.read_bytes())

    def write_pair(self, paths: PairPaths, pair: KeyPair, *, force: bool) -> None:
        """Write ``pair`` at ``paths``: both files or neither; refuse to replace without ``force``."""
        targets = [(paths.key, pair.key_pem, KEY_MODE), (paths.cert, pair.cert_pem, CERT_MODE)]
        existing = [str(path) for path, _, _ in targets if path.exists()]
        if existing and not force:
            raise CertError(
                ErrorKind.ALREADY_EXISTS,
                f"{' and '.join(existing)} already exist; pass --force to replace them "
                "(whatever uses the old files must then be given the new ones)",
                reason=CertReason.EXISTS,
            )
        self._make_dir()
        temps: list[tuple[str, Path]] = []
        try:
            for path, data, mode in targets:
                temps.append((_write_temp(path, data, mode), path))
            for tmp, path in temps:
                os.replace(tmp, path)
        except BaseException:
            for tmp, _ in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise

    def _make_dir(self) -> None:
        try:
            self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise CertError(
                ErrorKind.FAILED_PRECONDITION,
                f"cannot create the certificate directory {self.path}: {exc.strerror}; pass a writable --dir",
                reason=CertReason.DIR_UNWRITABLE,
            ) from exc


def _write_temp(path: Path, data: bytes, mode: int) -> str:
    """``data`` in a new temp file beside ``path`` with ``mode`` from creation on; its name."""
    # NOTE: mkstemp creates the file 0600, so a key is never readable by others, not even
    # for an instant; certificates are widened to 0644 afterwards.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp
