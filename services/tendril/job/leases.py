"""The JobService's view of the LeaseService: lease look-ups and the lease watch.

Both call as the worker (peer id = worker id). The watch stream stays open for the life of
the JobService: on RELEASED or EXPIRED the lease's jobs are cancelled. When the stream breaks
(the LeaseService restarted) it reconnects with backoff on a fresh channel
(:func:`tendril.core.calls.follow`), and after each (re)connect the jobs' leases are checked
once, so an end missed while disconnected still cancels its jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc

from tendril.core.calls import ChannelPool, follow, remote_error
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.core.timeutil import from_timestamp
from tendril.job.core import LeaseInfo
from tendril.job.errors import JobError, JobReason
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_sdk.retry import RetryPolicy, retry

log = get_logger("tendril.jobs.leases")

GET_TIMEOUT_SECONDS = 5.0
BACKOFF_START_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 2.0
# NOTE: calls still running on a channel the watch gave up get this long to finish.
OLD_CHANNEL_GRACE_SECONDS = 2.0
ENDED = {
    lease_pb2.LEASE_EVENT_TYPE_RELEASED: "was released",
    lease_pb2.LEASE_EVENT_TYPE_EXPIRED: "expired",
}
# The watch is opened again whatever ended it: the LeaseService may come back at any moment.
WATCH_POLICY = RetryPolicy(
    codes=frozenset(grpc.StatusCode),
    attempts=None,
    initial_backoff=BACKOFF_START_SECONDS,
    max_backoff=BACKOFF_MAX_SECONDS,
)
# The check of live leases after a (re)connect is tried until it gets through.
CHECK_POLICY = RetryPolicy(
    codes=frozenset(),
    attempts=None,
    initial_backoff=BACKOFF_START_SECONDS,
    max_backoff=BACKOFF_MAX_SECONDS,
    retry_if=lambda e: isinstance(e, JobError),
)


def _reason(kind: ErrorKind, code: grpc.StatusCode) -> JobReason:
    return JobReason.LEASE_SERVICE_UNAVAILABLE if kind is ErrorKind.UNAVAILABLE else JobReason.LEASE_CHECK_FAILED


class LeaseClient:
    """LeaseService.Get and LeaseService.Watch for the JobService."""

    def __init__(self, address: str, worker_id: str) -> None:
        self.address = address
        self.worker_id = worker_id
        self._pool = ChannelPool(worker_id, max_channels=1, close_grace=OLD_CHANNEL_GRACE_SECONDS)

    async def get(self, lease_id: str) -> LeaseInfo | None:
        try:
            with self._pool.using(self.address) as channel:
                stub = lease_pb2_grpc.LeaseServiceStub(channel)
                reply = await stub.Get(lease_pb2.GetRequest(lease_id=lease_id), timeout=GET_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            peer = f"the LeaseService at {self.address} (checking lease {lease_id})"
            raise remote_error(exc, peer, JobError, address=self.address, reason=_reason) from exc
        lease = reply.lease
        return LeaseInfo(
            lease_id=lease.lease_id,
            owner_id=lease.owner_id,
            renewable=lease.kind == lease_pb2.LEASE_KIND_RENEWABLE,
            expires_at=from_timestamp(lease.expires_at),
            gpus=int(lease.resources.gpu),
            cpu=float(lease.resources.cpu),
            memory_gib=float(lease.resources.memory_gib),
        )

    async def follow(self, on_ended: Callable[[str, str], None], on_connected: Callable[[], Awaitable[None]]) -> None:
        """Watch leases forever: ``on_ended(lease_id, why)`` on release/expiry; reconnects with backoff."""

        async def watch_once(live: Callable[[], None]) -> None:
            with self._pool.using(self.address) as channel:
                call = lease_pb2_grpc.LeaseServiceStub(channel).Watch(lease_pb2.WatchRequest())
                checker: asyncio.Task[None] | None = None
                try:
                    # The LeaseService sends initial metadata once the watch is registered: from
                    # then on no change is missed, so the one-off check of live leases runs after it.
                    await call.initial_metadata()
                    if not call.done():  # done here: the LeaseService is down, the loop below raises
                        live()
                        checker = asyncio.create_task(self._check_until_done(on_connected))
                    async for event in call:
                        why = ENDED.get(event.type)
                        if why is not None:
                            on_ended(event.lease.lease_id, why)
                finally:
                    if checker is not None:
                        checker.cancel()
                    call.cancel()

        # NOTE: after a break the watch dials afresh: the old channel's reconnect backoff may
        # have grown while the LeaseService was down.
        await follow(
            watch_once,
            name="leases",
            peer=f"LeaseService at {self.address}",
            policy=WATCH_POLICY,
            log=log,
            on_break=lambda: self._pool.retire(self.address),
        )

    async def _check_until_done(self, check: Callable[[], Awaitable[None]]) -> None:
        def retrying(error: BaseException, attempt: int, delay: float) -> None:
            log.debug("leases.check_retry", error=str(error), retry_in=delay)

        await retry(check, CHECK_POLICY, on_retry=retrying)

    async def close(self) -> None:
        await self._pool.close(grace=0.5)
