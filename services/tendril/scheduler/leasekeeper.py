"""Keeping an accepted lease alive: wait for the worker's confirmation, then renew at 2/3 of
the remaining time until told to stop; report the lease lost when renewal becomes impossible."""

from __future__ import annotations

import asyncio
import time

import grpc

from tendril.core.channel import error_info_reason
from tendril.core.logs import get_logger
from tendril.core.reasons import LeaseReason
from tendril.core.timeutil import from_timestamp, now
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc

log = get_logger("tendril.scheduler.lease")

CONFIRM_TIMEOUT_SECONDS = 10.0  # the arbiter confirms right after our ACCEPTED; allow a loaded machine
RETRY_SECONDS = 0.5
CALL_TIMEOUT_SECONDS = 5.0
_GONE = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)


class LeaseLost(Exception):
    """The lease cannot be renewed any more; ``str()`` says why."""


class LeaseKeeper:
    """Renews one lease at the worker's LeaseService (``channel``) as its owner."""

    def __init__(self, channel: grpc.aio.Channel, lease_id: str, worker_id: str) -> None:
        self.lease_id = lease_id
        self.worker_id = worker_id
        self._stub = lease_pb2_grpc.LeaseServiceStub(channel)
        self.expires_at = 0.0
        self.renewals = 0

    async def _renew(self) -> None:
        reply = await self._stub.Renew(lease_pb2.RenewRequest(lease_id=self.lease_id), timeout=CALL_TIMEOUT_SECONDS)
        self.expires_at = from_timestamp(reply.lease.expires_at)
        self.renewals += 1

    async def confirmed(self) -> None:
        """Return once the lease is renewable (and renewed once); LeaseLost when it never becomes so."""
        deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
        while True:
            try:
                await self._renew()
                return
            except grpc.aio.AioRpcError as exc:
                waiting = error_info_reason(exc) == LeaseReason.LEASE_NOT_CONFIRMED or exc.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if not waiting or time.monotonic() > deadline:
                    raise LeaseLost(
                        f"lease {self.lease_id} on {self.worker_id} was never confirmed: {exc.details()}"
                    ) from exc
            await asyncio.sleep(0.05)

    async def keep(self) -> None:
        """Renew forever (until cancelled); raises LeaseLost when the lease is gone or expired."""
        while True:
            await asyncio.sleep(max(0.05, (self.expires_at - now()) * 2 / 3))
            while True:
                try:
                    await self._renew()
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in _GONE:
                        raise LeaseLost(f"lease {self.lease_id} on {self.worker_id} is gone: {exc.details()}") from exc
                    if now() >= self.expires_at:
                        raise LeaseLost(
                            f"lease {self.lease_id} on {self.worker_id} expired: its LeaseService did not answer "
                            f"({exc.code().name}: {exc.details()})"
                        ) from exc
                    log.warning(
                        "lease.renew_retry", lease_id=self.lease_id, worker=self.worker_id, code=exc.code().name
                    )
                await asyncio.sleep(RETRY_SECONDS)

    async def release(self) -> None:
        """Give the lease back (best effort: a lease we cannot reach expires on its own)."""
        try:
            await self._stub.Release(lease_pb2.ReleaseRequest(lease_id=self.lease_id), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            log.info("lease.release_failed", lease_id=self.lease_id, worker=self.worker_id, code=exc.code().name)
