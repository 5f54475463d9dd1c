"""The gateways a peer may use, and moving to the next one when the one in use fails.

A network may have several gateways (over one Redis they share the bus and the registry).
Peers are given them as a list — ``gateway.address = "host1:50050,host2:50050"``, job.toml's
``scheduler.gateway``, ``tendril data serve --gateway`` — and use one at a time: the first
until it fails, then the next, round and round. Every gateway client goes through
:class:`Gateways`: the registry announcer (worker and data set records), the arbiter's bus
subscription, and the scheduler's publishes and registry reads. So failover lives here once:

* :meth:`Gateways.call` runs one unary call on the gateway in use and, when it fails with
  UNAVAILABLE (a gateway that is down, or whose Redis is), tries each other gateway once
  before it gives up with the last error;
* a stream follower opens its stream on :attr:`Gateways.current` and calls
  :meth:`Gateways.failed` when it breaks, so it reopens on the next gateway;
* what a peer keeps in the network is put again by its own refresh (the announcer Puts every
  TTL/3 on whichever gateway is in use), so moving needs no restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import grpc

from tendril.core.calls import ChannelPool
from tendril.core.logs import get_logger

log = get_logger("tendril.gateways")

T = TypeVar("T")

# NOTE: UNAVAILABLE only by default: a call that timed out may have been carried out (a
# Publish twice is two requests); idempotent callers (Put, List, Delete) add DEADLINE_EXCEEDED.
FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


def parse_addresses(value: str | Iterable[str]) -> list[str]:
    """``"a:1, b:2"`` or ``["a:1", "b:2"]`` -> ``["a:1", "b:2"]`` (blanks and repeats dropped, order kept)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    return out


class Gateways:
    """An ordered list of gateway addresses, the one in use, and a channel to each opened on demand."""

    def __init__(self, addresses: str | Iterable[str], *, peer_id: str = "") -> None:
        self.addresses = parse_addresses(addresses)
        if not self.addresses:
            raise ValueError("no gateway address given")
        self.peer_id = peer_id
        self._index = 0
        # NOTE: the pool retires a channel that could not reach its gateway, so a gateway that
        # comes back gets the very next call instead of a channel stuck in reconnect backoff.
        self._channels = ChannelPool(peer_id, max_channels=None)
        self.moves = 0  # times the gateway in use changed, for status and tests

    def __str__(self) -> str:
        return ",".join(self.addresses)

    @property
    def current(self) -> str:
        """The gateway in use."""
        return self.addresses[self._index]

    def channel(self, address: str | None = None) -> grpc.aio.Channel:
        """A channel to ``address`` (the gateway in use by default), kept for later calls."""
        return self._channels.channel(address or self.current)

    def failed(self, address: str, why: str = "") -> None:
        """``address`` failed: when it is the one in use, use the next one from now on."""
        if len(self.addresses) > 1 and address == self.current:
            self._index = (self._index + 1) % len(self.addresses)
            self.moves += 1
            log.warning("gateway.moved", failed=address, now=self.current, reason=why)

    async def call(
        self,
        fn: Callable[[grpc.aio.Channel], Awaitable[T]],
        *,
        codes: frozenset[grpc.StatusCode] = FAILOVER_CODES,
    ) -> T:
        """``await fn(channel)`` on the gateway in use; on a failure in ``codes`` on each other one in turn."""
        last: grpc.aio.AioRpcError | None = None
        for _ in range(len(self.addresses)):
            address = self.current
            try:
                with self._channels.using(address) as channel:
                    return await fn(channel)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in codes:
                    raise
                last = exc
                self.failed(address, f"{exc.code().name}: {exc.details()}")
        assert last is not None
        raise last

    async def close(self) -> None:
        await self._channels.close()
