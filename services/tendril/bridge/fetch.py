"""Downloading a resource (file:// or http(s)://) into the work dir (no gRPC here).

The bytes go to a hidden temporary file next to the destination while their sha256 is
computed; only a complete download whose hash matches the expected one (when given) is
renamed into place. Whatever fails — source, network, hash, cancellation — the temporary file
is removed, so a failed fetch keeps nothing.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tendril.bridge.errors import BridgeError
from tendril.bridge.files import landing
from tendril.core.errors import ErrorKind
from tendril_sdk.reasons import BridgeReason

CHUNK_BYTES = 1024 * 1024
SHA256_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
SCHEMES = ("file", "http", "https")


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A completed download."""

    path: Path
    size_bytes: int
    sha256: str


class FetchCancelled(Exception):
    """The caller went away; the download stopped and kept nothing."""


def check_request(uri: str, sha256: str) -> urllib.parse.ParseResult:
    """Validate the URI and the expected hash before anything is created."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in SCHEMES:
        raise BridgeError(
            ErrorKind.INVALID_ARGUMENT,
            f"uri {uri!r} has scheme {parsed.scheme or '(none)'!r}; use file:///absolute/path, http:// or https://",
            reason=BridgeReason.BAD_URI,
        )
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise BridgeError(
            ErrorKind.INVALID_ARGUMENT,
            f"uri {uri!r} names host {parsed.netloc!r}; file:// URIs must be local (file:///absolute/path)",
            reason=BridgeReason.BAD_URI,
        )
    if parsed.scheme != "file" and not parsed.netloc:
        raise BridgeError(ErrorKind.INVALID_ARGUMENT, f"uri {uri!r} has no host", reason=BridgeReason.BAD_URI)
    if sha256 and not SHA256_PATTERN.fullmatch(sha256):
        raise BridgeError(
            ErrorKind.INVALID_ARGUMENT,
            f"sha256 {sha256[:80]!r} is not 64 hex digits; give the expected hex digest or leave it empty",
            reason=BridgeReason.BAD_SHA256,
        )
    return parsed


def default_name(uri: str) -> str:
    """The file name at the end of the URI's path ("" when it has none)."""
    return PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(uri).path)).name


def _open_source(uri: str, parsed: urllib.parse.ParseResult, timeout: float) -> BinaryIO:
    if parsed.scheme == "file":
        path = urllib.parse.unquote(parsed.path)
        try:
            if Path(path).is_dir():
                raise BridgeError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"{uri} is a directory; fetch files one by one",
                    reason=BridgeReason.BAD_URI,
                )
            return open(path, "rb")
        except FileNotFoundError as exc:
            raise BridgeError(
                ErrorKind.NOT_FOUND, f"{uri}: no such file", reason=BridgeReason.RESOURCE_NOT_FOUND
            ) from exc
        except PermissionError as exc:
            raise BridgeError(
                ErrorKind.PERMISSION_DENIED,
                f"{uri}: the worker may not read it",
                reason=BridgeReason.RESOURCE_FORBIDDEN,
            ) from exc
    request = urllib.request.Request(uri, headers={"User-Agent": "tendril-bridge"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        kind = ErrorKind.NOT_FOUND if exc.code in (404, 410) else ErrorKind.FAILED_PRECONDITION
        if exc.code in (401, 403):
            kind = ErrorKind.PERMISSION_DENIED
        elif exc.code >= 500:
            kind = ErrorKind.UNAVAILABLE
        raise BridgeError(
            kind, f"{uri}: HTTP {exc.code} {exc.reason}", reason=BridgeReason.RESOURCE_HTTP_ERROR
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise BridgeError(
            ErrorKind.UNAVAILABLE,
            f"{uri}: cannot connect ({why}); check the address and that the server is up",
            reason=BridgeReason.RESOURCE_UNREACHABLE,
        ) from exc


def download(
    uri: str,
    dest: Path,
    *,
    sha256: str = "",
    stop: threading.Event | None = None,
    timeout: float = 60.0,
) -> Fetched:
    """Copy ``uri`` to ``dest`` (blocking: run it in a thread). ``dest`` must already be confined."""
    parsed = check_request(uri, sha256)
    digest = hashlib.sha256()
    size = 0
    try:
        with landing(dest) as tmp:
            with _open_source(uri, parsed, timeout) as source, open(tmp, "xb") as out:
                while chunk := source.read(CHUNK_BYTES):
                    if stop is not None and stop.is_set():
                        raise FetchCancelled(uri)
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            got = digest.hexdigest()
            if sha256 and got != sha256.lower():
                raise BridgeError(
                    ErrorKind.DATA_LOSS,
                    f"{uri}: sha256 is {got}, expected {sha256.lower()}; nothing was kept",
                    reason=BridgeReason.SHA256_MISMATCH,
                    metadata={"expected": sha256.lower(), "got": got},
                )
    except OSError as exc:
        kind = ErrorKind.RESOURCE_EXHAUSTED if exc.errno == errno.ENOSPC else ErrorKind.UNAVAILABLE
        raise BridgeError(
            kind, f"{uri}: transfer failed ({exc}); nothing was kept", reason=BridgeReason.RESOURCE_TRANSFER
        ) from exc
    return Fetched(dest, size, got)
