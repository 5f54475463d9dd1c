"""The JobService's view of the LeaseService: lease look-ups and the lease watch.

Both call as the worker (peer id = worker id). The watch stream stays open for the life of
the JobService: on RELEASED or EXPIRED the lease's jobs are cancelled. When the stream breaks
(the LeaseService restarted) it reconnects with backoff on a fresh channel, and after each
(re)connect the jobs' leases are checked once, so an end missed while disconnected still
cancels its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc

from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind, kind_for_status
from tendril.core.logs import get_logger
from tendril.core.timeutil import from_timestamp
from tendril.job.core import LeaseInfo
from tendril.job.errors import JobError, JobReason
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc

log = get_logger("tendril.jobs.leases")

GET_TIMEOUT_SECONDS = 5.0
BACKOFF_START_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 2.0
ENDED = {
    lease_pb2.LEASE_EVENT_TYPE_RELEASED: "was released",
    lease_pb2.LEASE_EVENT_TYPE_EXPIRED: "expired",
}


class LeaseClient:
    """LeaseService.Get and LeaseService.Watch for the JobService."""

    def __init__(self, address: str, worker_id: str) -> None:
        self.address = address
        self.worker_id = worker_id
        self._channel = open_channel(address, peer_id=worker_id)
        self._old: set[asyncio.Task[None]] = set()

    def _renew_channel(self) -> None:
        # NOTE: a fresh channel connects at once; the old one's reconnect backoff could have
        # grown while the LeaseService was down. Calls still on the old one get 2 s to finish.
        old, self._channel = self._channel, open_channel(self.address, peer_id=self.worker_id)
        task = asyncio.ensure_future(old.close(grace=2.0))
        self._old.add(task)
        task.add_done_callback(self._old.discard)

    @property
    def _stub(self) -> lease_pb2_grpc.LeaseServiceStub:
        return lease_pb2_grpc.LeaseServiceStub(self._channel)

    async def get(self, lease_id: str) -> LeaseInfo | None:
        try:
            reply = await self._stub.Get(lease_pb2.GetRequest(lease_id=lease_id), timeout=GET_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            kind = kind_for_status(exc.code())
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                kind = ErrorKind.UNAVAILABLE
            raise JobError(
                kind,
                f"cannot check lease {lease_id} with the LeaseService at {self.address} "
                f"({exc.code().name}: {exc.details()}); retry shortly",
                reason=(
                    JobReason.LEASE_SERVICE_UNAVAILABLE
                    if kind is ErrorKind.UNAVAILABLE
                    else JobReason.LEASE_CHECK_FAILED
                ),
            ) from exc
        lease = reply.lease
        return LeaseInfo(
            lease_id=lease.lease_id,
            owner_id=lease.owner_id,
            renewable=lease.kind == lease_pb2.LEASE_KIND_RENEWABLE,
            expires_at=from_timestamp(lease.expires_at),
        )

    async def _check_until_done(self, check: Callable[[], Awaitable[None]]) -> None:
        delay = BACKOFF_START_SECONDS
        while True:
            try:
                await check()
                return
            except JobError as exc:
                log.debug("leases.check_retry", error=exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def follow(self, on_ended: Callable[[str, str], None], on_connected: Callable[[], Awaitable[None]]) -> None:
        """Watch leases forever: ``on_ended(lease_id, why)`` on release/expiry; reconnects with backoff."""
        delay = BACKOFF_START_SECONDS
        while True:
            call = self._stub.Watch(lease_pb2.WatchRequest())
            checker: asyncio.Task[None] | None = None
            try:
                # The LeaseService sends initial metadata once the watch is registered: from
                # then on no change is missed, so the one-off check of live leases runs after it.
                await call.initial_metadata()
                if not call.done():  # done here: the LeaseService is down, the loop below raises
                    log.info("leases.watching", address=self.address)
                    checker = asyncio.create_task(self._check_until_done(on_connected))
                async for event in call:
                    delay = BACKOFF_START_SECONDS
                    why = ENDED.get(event.type)
                    if why is not None:
                        on_ended(event.lease.lease_id, why)
                log.warning("leases.watch_ended", address=self.address)
            except grpc.aio.AioRpcError as exc:
                log.warning("leases.watch_broken", address=self.address, code=exc.code().name, retry_in=delay)
                self._renew_channel()
            finally:
                if checker is not None:
                    checker.cancel()
                call.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def close(self) -> None:
        await self._channel.close(grace=0.5)
        for task in list(self._old):
            with contextlib.suppress(Exception):
                await task
