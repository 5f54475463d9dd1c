"""One push being received into its own partial file (resumable, never part of an aggregate).

A push is spooled chunk by chunk (pwrite + digest on the way) and counts only once it is
complete, its digest matches and its own SafeTensors header agrees with the stream header.
A spool whose call broke off stays as it is, so a retry with the same stream id resumes at
``received``; after a restart the partial file is re-hashed and resumed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tendril.core.streaming import (
    FileDestination,
    Receiver,
    StreamError,
    StreamInfo,
    check_payload_header,
    digest_file,
)
from tendril.core.tensorfile import Layout
from tendril.paramserver.errors import ParameterServerError


def stream_error(exc: StreamError) -> ParameterServerError:
    """A broken stream contract as the ParameterServer's error."""
    return ParameterServerError(exc.kind, exc.message, reason=exc.reason)


class Spool:
    """A push's partial file, its receiver and the call that currently feeds it."""

    def __init__(self, info: StreamInfo, path: Path, receiver: Receiver) -> None:
        self.info = info
        self.path = path
        self.receiver = receiver
        self.owner: asyncio.Task[object] | None = None
        self.stale: ParameterServerError | None = None  # set when it can no longer count

    @classmethod
    def open(cls, info: StreamInfo, path: Path) -> Spool:
        """Create the partial file, or pick up an existing one (blocking: hashes what is there)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        received = path.stat().st_size if path.exists() else 0
        if received > info.total_bytes:
            received = 0
        digest = digest_file(path, info.digest.algorithm, upto=received) if received else None
        # NOTE: not preallocated: the file's size is what arrived, which is how a restarted
        # server knows where a cut push stands.
        dest = FileDestination(path, info.total_bytes, preallocate=False, keep=received > 0)
        return cls(info, path, Receiver(info, dest, received=received, digest=digest))

    @property
    def received(self) -> int:
        return self.receiver.received

    @property
    def complete(self) -> bool:
        return self.receiver.complete

    def same_payload(self, info: StreamInfo) -> bool:
        mine = self.info
        return (mine.digest, mine.total_bytes, mine.worker_id, mine.round, mine.run_id) == (
            info.digest,
            info.total_bytes,
            info.worker_id,
            info.round,
            info.run_id,
        )

    async def take_over(self) -> None:
        """A retry of this stream arrived: stop the call that fed it before (a dead connection)."""
        owner, current = self.owner, asyncio.current_task()
        if owner is not None and owner is not current and not owner.done():
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(owner), timeout=5.0)
        self.owner = current
        await self.receiver.settle()

    async def write(self, offset: int, data: bytes | memoryview) -> None:
        if self.stale is not None:
            raise self.stale
        try:
            await self.receiver.feed_async(offset, data)
        except StreamError as exc:
            raise stream_error(exc) from exc

    async def finish(self) -> Layout:
        """Verify the whole payload (size, sha256, its own header); the payload's layout."""
        if self.stale is not None:
            raise self.stale
        try:
            await self.receiver.settle()
            self.receiver.verify()
            return check_payload_header(self.path, self.info)
        except StreamError as exc:
            raise stream_error(exc) from exc

    def close_file(self) -> None:
        self.receiver.close()

    def discard(self) -> None:
        """Drop it: nothing of it is kept."""
        self.close_file()
        self.path.unlink(missing_ok=True)
