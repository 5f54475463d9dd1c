"""Keep one record alive in a gateway's RegistryService (workers, data sets, ...).

:class:`RegistryAnnouncer` puts the record at start, refreshes it every TTL/3 (so one lost
refresh never lets it expire), puts it again after a gateway restart (a refresh is a Put, so
a gateway that forgot the record simply gets it back), and deletes it on a clean stop.
Given several gateways (:class:`~tendril.core.gateways.Gateways`), a Put that finds the one
in use down goes to the next at once, and the record lives on there from then on.
:meth:`RegistryAnnouncer.withdraw` takes the record out of the registry for a while (a worker
that cannot run jobs now) and :meth:`RegistryAnnouncer.resume` puts it back at once.
A gateway that is down never stops the announcing service: failures are logged and retried
on the next tick. The refresh loop is :func:`~tendril.core.liveness.supervised`: should it ever
end, the process ends with it (or ``on_death`` runs) rather than vanish from the registry quietly.

Ownership: without mTLS the Put that creates the record returns its secret; the announcer keeps
it (in memory) and presents it with every later Put and Delete. When the record expired or the
gateway forgot it, the next Put creates it anew and the announcer keeps the new secret. Under
mTLS the certificate is the proof and no secret comes back. With ``secret_file`` the secret is
also kept on disk (mode 0600), so a restarted worker refreshes the record it left behind at
once instead of waiting out its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from tendril.core import liveness
from tendril.core.gateways import FAILOVER_CODES, Gateways
from tendril.core.logs import get_logger
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

log = get_logger("tendril.announce")

CALL_TIMEOUT_SECONDS = 5.0
# Put and Delete may be repeated on another gateway after a timeout: both are idempotent.
IDEMPOTENT_CODES = FAILOVER_CODES | {grpc.StatusCode.DEADLINE_EXCEEDED}


class RegistryAnnouncer:
    """Announces ``payload`` as record (``kind``, ``record_id``) at one of the gateways ``gateway_address``."""

    def __init__(
        self,
        gateway_address: str | Iterable[str],
        kind: str,
        record_id: str,
        payload: Message,
        *,
        ttl_seconds: float,
        peer_id: str,
        on_death: Callable[[str, BaseException | None], None] | None = None,
        secret_file: Path | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        self.gateways = Gateways(gateway_address, peer_id=peer_id)
        self.kind = kind
        self.record_id = record_id
        self.ttl_seconds = ttl_seconds
        self.peer_id = peer_id
        self._payload = payload
        self._on_death = on_death
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self.puts_ok = 0  # successful Puts (first one included), for status and tests
        self.secret_file = secret_file
        self.secret = self._load_secret()  # the record's secret from the Put that created it (no mTLS)
        self.withdrawn = False

    @property
    def gateway_address(self) -> str:
        """The gateway in use."""
        return self.gateways.current

    def update(self, payload: Message) -> None:
        """Announce new content from the next refresh on."""
        self._payload = payload

    def _record(self) -> gateway_pb2.Record:
        packed = any_pb2.Any()
        packed.Pack(self._payload)
        return gateway_pb2.Record(kind=self.kind, id=self.record_id, payload=packed, ttl_seconds=self.ttl_seconds)

    def _load_secret(self) -> str:
        if self.secret_file is None:
            return ""
        try:
            return self.secret_file.read_text().strip()
        except OSError:
            return ""  # none yet (or unreadable): the first Put makes one

    def _save_secret(self) -> None:
        if self.secret_file is None:
            return
        tmp = self.secret_file.with_name(self.secret_file.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(self.secret)
            os.replace(tmp, self.secret_file)
        except OSError as exc:
            # NOTE: the secret still works from memory; only a restart within the TTL waits it out.
            log.warning("registry.secret_not_saved", path=str(self.secret_file), error=str(exc))

    @property
    def registered(self) -> bool:
        """The record is in the registry (as far as this announcer knows)."""
        return self.puts_ok > 0 and not self.withdrawn

    async def put_once(self) -> bool:
        """One Put (none while withdrawn); True when the gateway stored the record."""
        assert self._started, "start() first"
        if self.withdrawn:
            return False
        request = gateway_pb2.PutRequest(record=self._record(), secret=self.secret)
        try:
            reply = await self.gateways.call(
                lambda channel: gateway_pb2_grpc.RegistryServiceStub(channel).Put(
                    request, timeout=CALL_TIMEOUT_SECONDS
                ),
                codes=IDEMPOTENT_CODES,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "registry.put_failed",
                gateway=self.gateway_address,
                kind=self.kind,
                id=self.record_id,
                code=exc.code().name,
                details=exc.details(),
                hint="another peer holds this record id; it is free again once its TTL runs out"
                if exc.code() == grpc.StatusCode.PERMISSION_DENIED
                else None,
            )
            return False
        if reply.secret:
            self.secret = reply.secret  # this Put created the record (first Put, or after expiry)
            self._save_secret()
        self.puts_ok += 1
        return True

    async def start(self) -> None:
        """Put the record now (a failure is logged, not raised) and keep refreshing it."""
        self._started = True
        if await self.put_once():
            log.info("registry.announced", gateway=self.gateway_address, kind=self.kind, id=self.record_id)
        self._task = liveness.supervised(
            self._refresh_loop(),
            name=f"announce-{self.kind}",
            # a turn: the sleep, then one Put bounded by its timeout
            every=self.ttl_seconds / 3 + CALL_TIMEOUT_SECONDS,
            on_death=self._on_death,
        )

    async def _refresh_loop(self) -> None:
        while True:
            liveness.beat()
            await asyncio.sleep(self.ttl_seconds / 3)
            await self.put_once()

    async def withdraw(self, why: str) -> None:
        """Take the record out of the registry until :meth:`resume` (refreshes pause meanwhile)."""
        assert self._started, "start() first"
        self.withdrawn = True
        await self._delete()
        log.warning("registry.withdrawn", kind=self.kind, id=self.record_id, reason=why)

    async def resume(self) -> None:
        """Put the record back now and refresh it again."""
        self.withdrawn = False
        if await self.put_once():
            log.info("registry.announced", gateway=self.gateway_address, kind=self.kind, id=self.record_id)

    async def _delete(self) -> None:
        request = gateway_pb2.DeleteRequest(kind=self.kind, id=self.record_id, secret=self.secret)
        try:
            await self.gateways.call(
                lambda channel: gateway_pb2_grpc.RegistryServiceStub(channel).Delete(
                    request, timeout=CALL_TIMEOUT_SECONDS
                ),
                codes=IDEMPOTENT_CODES,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("registry.delete_failed", kind=self.kind, id=self.record_id, code=exc.code().name)

    async def stop(self) -> None:
        """Stop refreshing and delete the record (best effort: the TTL removes it otherwise)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._started:
            return
        await self._delete()
        await self.gateways.close()
        self._started = False
