"""Downloading a resource (file://, http(s)://, or a data node's asset) into the work dir (no gRPC here).

The bytes go to a hidden temporary file next to the destination while their sha256 is
computed; only a complete download whose hash matches the expected one (when given) is
renamed into place. Whatever fails — source, network, hash, cancellation — the temporary file
is removed, so a failed fetch keeps nothing.

A ``tendril-data://<dataset_id>/<asset name>`` source arrives as chunks from the data node
(:func:`land_chunks`; the bridge's :mod:`~tendril.bridge.assets` streams them) and lands the same way.

A file:// source must lie inside one of the allowed directories: the job's work dir and the
worker's ``job.fetch_roots`` (none by default). The job's config comes from a remote scheduler;
without the confinement it could name any file the worker can read (``file:///etc/shadow``)
and learn its size and sha256 from the job's log. The check follows symbolic links, and the
file opened is checked to be the file checked. A source outside is refused PERMISSION_DENIED
(``RESOURCE_OUTSIDE_ROOTS``) whether it exists or not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
import os
import re
import stat
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tendril.bridge.errors import BridgeError
from tendril.bridge.files import landing
from tendril.core.errors import ErrorKind
from tendril_sdk.reasons import BridgeReason
from tendril_sdk.uris import DATA_SCHEME, parse_data_uri

CHUNK_BYTES = 1024 * 1024
SHA256_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
SCHEMES = ("file", "http", "https", DATA_SCHEME)


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
            f"uri {uri!r} has scheme {parsed.scheme or '(none)'!r}; use file:///absolute/path, http://, https:// "
            f"or {DATA_SCHEME}://<dataset_id>/<asset name>",
            reason=BridgeReason.BAD_URI,
        )
    if parsed.scheme == DATA_SCHEME:
        try:
            parse_data_uri(uri)
        except ValueError as exc:
            raise BridgeError(ErrorKind.INVALID_ARGUMENT, str(exc), reason=BridgeReason.BAD_URI) from exc
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


def _outside(uri: str) -> BridgeError:
    return BridgeError(
        ErrorKind.PERMISSION_DENIED,
        f"{uri} is outside the directories this worker lets jobs fetch files from (the job's work dir and the "
        "worker's job.fetch_roots); serve it over http(s), or ask the worker's operator to add its directory to "
        "job.fetch_roots",
        reason=BridgeReason.RESOURCE_OUTSIDE_ROOTS,
    )


def confined_source(uri: str, path: str, roots: Sequence[Path]) -> Path:
    """The real path of a file:// source when it lies inside one of ``roots`` (symlinks followed)."""
    if "\x00" in path:
        raise BridgeError(ErrorKind.INVALID_ARGUMENT, f"{uri} contains a NUL byte", reason=BridgeReason.BAD_URI)
    real = Path(path).resolve(strict=False)
    for root in roots:
        base = root.resolve(strict=False)
        if real == base or base in real.parents:
            return real
    raise _outside(uri)


def _open_file(uri: str, path: str, roots: Sequence[Path]) -> BinaryIO:
    real = confined_source(uri, path, roots)
    # NOTE: O_NONBLOCK so that a FIFO cannot hold the open forever (it is refused below); a
    # regular file ignores the flag.
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise BridgeError(
                ErrorKind.INVALID_ARGUMENT,
                f"{uri} is not a regular file (a directory?); fetch files one by one",
                reason=BridgeReason.BAD_URI,
            )
        # NOTE: the file opened must be the file checked: a symlink put in place between the
        # check and the open (by the executor, which shares the worker's user) would escape.
        if not os.path.samestat(opened, os.stat(confined_source(uri, path, roots))):
            raise _outside(uri)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_source(uri: str, parsed: urllib.parse.ParseResult, timeout: float, roots: Sequence[Path]) -> BinaryIO:
    if parsed.scheme == "file":
        path = urllib.parse.unquote(parsed.path)
        try:
            return _open_file(uri, path, roots)
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
    roots: Sequence[Path] = (),
    stop: threading.Event | None = None,
    timeout: float = 60.0,
) -> Fetched:
    """Copy ``uri`` to ``dest`` (blocking: run it in a thread). ``dest`` must already be confined;
    a file:// source must be inside one of ``roots`` (the job's work dir and job.fetch_roots)."""
    parsed = check_request(uri, sha256)
    digest = hashlib.sha256()
    size = 0
    try:
        with landing(dest) as tmp:
            with _open_source(uri, parsed, timeout, roots) as source, open(tmp, "xb") as out:
                while chunk := source.read(CHUNK_BYTES):
                    if stop is not None and stop.is_set():
                        raise FetchCancelled(uri)
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            got = digest.hexdigest()
            if sha256 and got != sha256.lower():
                raise _mismatch(uri, got, sha256)
    except OSError as exc:
        raise _transfer_failed(uri, exc) from exc
    return Fetched(dest, size, got)


async def land_chunks(uri: str, chunks: AsyncIterator[bytes], dest: Path, *, sha256: str) -> Fetched:
    """Write the streamed bytes of ``uri`` to ``dest`` (already confined) if they hash to ``sha256``."""
    digest = hashlib.sha256()
    size = 0
    try:
        with landing(dest) as tmp:
            out = await asyncio.to_thread(open, tmp, "xb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)  # NOTE: the disk never stalls the event loop
                    digest.update(chunk)
                    size += len(chunk)
            finally:
                out.close()
            got = digest.hexdigest()
            if got != sha256.lower():
                raise _mismatch(uri, got, sha256)
    except OSError as exc:
        raise _transfer_failed(uri, exc) from exc
    return Fetched(dest, size, got)


def _mismatch(uri: str, got: str, sha256: str) -> BridgeError:
    return BridgeError(
        ErrorKind.DATA_LOSS,
        f"{uri}: sha256 is {got}, expected {sha256.lower()}; nothing was kept",
        reason=BridgeReason.SHA256_MISMATCH,
        metadata={"expected": sha256.lower(), "got": got},
    )


def _transfer_failed(uri: str, exc: OSError) -> BridgeError:
    kind = ErrorKind.RESOURCE_EXHAUSTED if exc.errno == errno.ENOSPC else ErrorKind.UNAVAILABLE
    return BridgeError(kind, f"{uri}: transfer failed ({exc}); nothing was kept", reason=BridgeReason.RESOURCE_TRANSFER)
