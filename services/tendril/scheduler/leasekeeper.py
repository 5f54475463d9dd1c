"""Keeping an accepted lease alive: the first renewal confirms it (it is our acceptance, the
worker needs no other word from us), then renew at 2/3 of the remaining time until told to
stop; report the lease lost when renewal becomes impossible."""

from __future__ import annotations

import asyncio

import grpc

from tendril.core.logs import get_logger
from tendril.core.timeutil import from_timestamp, now
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_sdk.retry import STREAM_BREAK_CODES, TRANSIENT_CODES, RetryPolicy, retry

log = get_logger("tendril.scheduler.lease")

CALL_TIMEOUT_SECONDS = 5.0
# How long the first renewal is retried when the temporary lease's expiry is not known.
CONFIRM_WINDOW_SECONDS = 10.0
RETRY_INITIAL_SECONDS = 0.05
RETRY_MAX_SECONDS = 0.5
# The LeaseService did not answer (down, restarting, slow, the connection broke): try again
# while the lease may still be alive. Any other answer (NOT_FOUND, LEASE_EXPIRED, not the
# owner, ...) is final: waiting would not bring the lease back.
RENEW_RETRY_CODES = TRANSIENT_CODES | STREAM_BREAK_CODES


class LeaseLost(Exception):
    """The lease cannot be renewed any more; ``str()`` says why."""


class LeaseKeeper:
    """Renews one lease at the worker's LeaseService (``channel``) as its owner.

    ``expires_at`` (epoch seconds) is when the temporary lease ends unless it is confirmed,
    as the offer said; the first renewal is retried until then.
    """

    def __init__(self, channel: grpc.aio.Channel, lease_id: str, worker_id: str, *, expires_at: float = 0.0) -> None:
        self.lease_id = lease_id
        self.worker_id = worker_id
        self._stub = lease_pb2_grpc.LeaseServiceStub(channel)
        self.expires_at = expires_at
        self.renewals = 0

    async def _renew(self) -> None:
        reply = await self._stub.Renew(lease_pb2.RenewRequest(lease_id=self.lease_id), timeout=CALL_TIMEOUT_SECONDS)
        self.expires_at = from_timestamp(reply.lease.expires_at)
        self.renewals += 1

    async def _renew_until(self, until: float) -> None:
        """Renew, retrying a LeaseService that does not answer until ``until`` (epoch seconds)."""
        policy = RetryPolicy(
            codes=RENEW_RETRY_CODES,
            attempts=None,
            deadline=max(0.0, until - now()),
            initial_backoff=RETRY_INITIAL_SECONDS,
            max_backoff=RETRY_MAX_SECONDS,
        )

        def retrying(error: BaseException, attempt: int, delay: float) -> None:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__
            log.warning("lease.renew_retry", lease_id=self.lease_id, worker=self.worker_id, code=code, attempt=attempt)

        await retry(self._renew, policy, on_retry=retrying)

    async def confirmed(self) -> None:
        """Renew once, which makes the lease renewable; LeaseLost when that fails.

        NOTE: no polling for the arbiter's word: the worker turns a temporary lease renewable
        on its owner's first Renew, so this works whether or not the arbiter has heard our
        ACCEPTED. A LeaseService that does not answer is asked again until the temporary
        lease would have expired; a lease the arbiter already withdrew (its offer timed out)
        or that expired answers NOT_FOUND / LEASE_EXPIRED, and waiting would not bring it back.
        """
        until = self.expires_at or now() + CONFIRM_WINDOW_SECONDS
        try:
            await self._renew_until(until)
        except grpc.aio.AioRpcError as exc:
            raise LeaseLost(
                f"lease {self.lease_id} on {self.worker_id} was never confirmed: {exc.code().name}: {exc.details()}"
            ) from exc

    async def keep(self) -> None:
        """Renew forever (until cancelled); raises LeaseLost when the lease is gone or expired."""
        while True:
            await asyncio.sleep(max(0.05, (self.expires_at - now()) * 2 / 3))
            try:
                await self._renew_until(self.expires_at)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in RENEW_RETRY_CODES:
                    raise LeaseLost(
                        f"lease {self.lease_id} on {self.worker_id} expired: its LeaseService did not answer "
                        f"({exc.code().name}: {exc.details()})"
                    ) from exc
                raise LeaseLost(f"lease {self.lease_id} on {self.worker_id} is gone: {exc.details()}") from exc

    async def release(self) -> None:
        """Give the lease back (best effort: a lease we cannot reach expires on its own)."""
        try:
            await self._stub.Release(lease_pb2.ReleaseRequest(lease_id=self.lease_id), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            log.info("lease.release_failed", lease_id=self.lease_id, worker=self.worker_id, code=exc.code().name)
