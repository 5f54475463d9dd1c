"""Pulling one slice from its data node into the cache: resume after cuts, verify, commit.

:func:`transfer` writes the stream into a temp file and hashes it on the way; when the stream
breaks (or stalls for ``idle_timeout_seconds``) it asks again from the last byte it has, up to
``attempts`` consecutive failures without progress, with exponential backoff.
:func:`download_verified` checks the sha256 and size: a mismatch is downloaded once more from
scratch (the first copy may have been damaged on the way), and a second mismatch is a clear
DATA_LOSS error. Only a verified file is renamed into the cache; every temp file is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
from pathlib import Path
from typing import IO, Any

from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.data_fetcher.cache import CacheEntry, SliceCache
from tendril.data_fetcher.errors import DownloadReason, FetcherError, FetcherReason
from tendril.data_fetcher.model import Assignment, FetcherStats, FetchPolicy, SliceSource

log = get_logger("tendril.data_fetcher.download")


class _Mismatch(Exception):
    """The bytes received are not the slice the assignment describes."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _append(f: IO[bytes], digest: Any, data: bytes) -> None:
    f.write(data)
    digest.update(data)


async def transfer(source: SliceSource, a: Assignment, tmp: Path, stats: FetcherStats, policy: FetchPolicy) -> str:
    """Stream slice ``a`` into ``tmp``; returns its hex sha256. Raises FetcherError or _Mismatch."""
    digest = hashlib.sha256()
    offset = 0
    failures = 0
    backoff = policy.backoff()
    last_error: FetcherError | None = None
    f = await asyncio.to_thread(open, tmp, "wb")
    try:
        while True:
            if offset > 0:
                stats.resumed_fetches += 1
                log.info("download.resume", slice=a.slice_name, offset=offset, node=a.data_node_address)
            progressed = False
            stream = source.stream(a.data_node_address, a.dataset_id, a.slice_name, offset)
            try:
                while True:
                    try:
                        chunk = await asyncio.wait_for(anext(stream), policy.idle_timeout_seconds)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise FetcherError(
                            ErrorKind.UNAVAILABLE,
                            f"data node {a.data_node_address} sent nothing for {policy.idle_timeout_seconds}s",
                            reason=DownloadReason.STREAM_STALLED,
                        ) from None
                    if chunk.total_bytes != a.size_bytes:
                        raise _Mismatch(f"the data node says the file has {chunk.total_bytes} bytes")
                    if chunk.offset != offset or offset + len(chunk.data) > a.size_bytes:
                        raise _Mismatch(
                            f"chunk at offset {chunk.offset} with {len(chunk.data)} bytes (expected {offset})"
                        )
                    await asyncio.to_thread(_append, f, digest, chunk.data)
                    offset += len(chunk.data)
                    stats.bytes_downloaded += len(chunk.data)
                    progressed = progressed or bool(chunk.data)
                if offset == a.size_bytes:
                    return digest.hexdigest()
                # A stream that ends early is a cut like any other: ask for the rest.
                last_error = FetcherError(
                    ErrorKind.UNAVAILABLE,
                    f"stream ended at byte {offset} of {a.size_bytes}",
                    reason=DownloadReason.STREAM_SHORT,
                )
            except FetcherError as exc:
                if not exc.retryable:
                    raise
                last_error = exc
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()
            failures = 0 if progressed else failures + 1
            if progressed:
                backoff.reset()
            if failures >= policy.attempts:
                assert last_error is not None
                raise FetcherError(
                    ErrorKind.UNAVAILABLE,
                    f"cannot download {a.slice_name} of data set {a.dataset_id} from {a.data_node_address}: "
                    f"{failures} attempts in a row failed at byte {offset} of {a.size_bytes} "
                    f"(last: {last_error.message}); check that the data node is running",
                    reason=FetcherReason.DATA_NODE_UNAVAILABLE,
                    metadata={"data_node": a.data_node_address, "offset": str(offset)},
                )
            await asyncio.sleep(backoff.next())
    finally:
        await asyncio.to_thread(f.close)


# What a full disk or quota reports; only these are the worker running out of room.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def cache_write_error(a: Assignment, root: Path, exc: OSError) -> FetcherError:
    """CACHE_WRITE_FAILED for a slice the cache could not take: RESOURCE_EXHAUSTED when the disk
    is full, else FAILED_PRECONDITION (permissions, a read-only or failing disk)."""
    # NOTE: neither is worth an immediate retry; both need the worker's operator. Only a full
    # disk is exhaustion: a cache folder the DataFetcher may not write is a precondition of
    # the worker, and "free disk space" would send its operator the wrong way.
    where = f"cannot write slice {a.slice_name} into the cache at {root}: {exc}"
    if exc.errno in _NO_SPACE:
        kind, message = ErrorKind.RESOURCE_EXHAUSTED, f"{where}; free disk space or lower data_fetcher.cache_bytes"
    else:
        kind, message = (
            ErrorKind.FAILED_PRECONDITION,
            f"{where}; the DataFetcher must create and rename files there: check the folder's owner, "
            "permissions and file system",
        )
    return FetcherError(
        kind,
        message,
        reason=FetcherReason.CACHE_WRITE_FAILED,
        metadata={"errno": errno.errorcode.get(exc.errno, str(exc.errno))} if exc.errno else None,
    )


async def download_verified(
    source: SliceSource, cache: SliceCache, a: Assignment, stats: FetcherStats, policy: FetchPolicy
) -> CacheEntry:
    """Download ``a`` into the cache (verified); refetches once on a mismatch, then DATA_LOSS."""
    problem = ""
    for attempt in (1, 2):
        try:
            tmp = cache.temp_path(a.key)
        except OSError as exc:
            raise cache_write_error(a, cache.root, exc) from exc
        try:
            try:
                got = await transfer(source, a, tmp, stats, policy)
            except _Mismatch as exc:
                problem = exc.what
            else:
                if got == a.sha256:
                    return cache.commit(tmp, a.key)
                problem = f"its sha256 is {got}"
        except OSError as exc:
            raise cache_write_error(a, cache.root, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        stats.sha256_mismatches += 1
        log.warning("download.mismatch", slice=a.slice_name, attempt=attempt, problem=problem)
    raise FetcherError(
        ErrorKind.DATA_LOSS,
        f"slice {a.slice_name} of data set {a.dataset_id} from data node {a.data_node_address} failed verification "
        f"twice: expected sha256 {a.sha256} and {a.size_bytes} bytes, but {problem}. The data node's copy or "
        "the scheduler's manifest is wrong: prepare or serve the data set again.",
        reason=FetcherReason.SLICE_SHA256_MISMATCH,
        metadata={"slice": a.slice_name, "dataset_id": a.dataset_id, "expected_sha256": a.sha256},
    )
