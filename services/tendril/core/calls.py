"""Calling other peers: cached channels, what a peer's failure becomes, following a stream.

Every service that calls another peer uses these three, so that the rules are written once:

* :class:`ChannelPool` — one channel per address, all calling as one peer id; a bounded LRU;
  a channel is dropped (and the peer dialled afresh next time) when a call could not reach
  the peer, and closed once the calls that use it are done.
* :func:`remote_error` — a failed call to a peer as the calling service's own
  :class:`~tendril.core.errors.TendrilError` subclass (the rule is in its docstring and in
  docs/ARCHITECTURE.md "Remote errors").
* :func:`follow` — open a long-lived stream (a watch, a subscription) again and again, with
  the one backoff, starting the backoff over after a healthy stream, logging each break.

When to retry and how long to wait are the SDK's (:mod:`tendril_sdk.retry`:
``TRANSIENT_CODES``, ``STREAM_BREAK_CODES``, ``Backoff``, ``RetryPolicy``, ``retry``); the
ErrorInfo of a rich status is read by :func:`tendril_sdk.errors.error_reason` /
:func:`~tendril_sdk.errors.error_metadata`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc

from tendril.core.channel import open_channel
from tendril.core.errors import ErrorKind, TendrilError, kind_for_status
from tendril_sdk.errors import error_metadata, error_reason
from tendril_sdk.retry import STREAM_BREAK_CODES, TRANSIENT_CODES, RetryPolicy

__all__ = [
    "CURABLE_CODES",
    "ChannelPool",
    "follow",
    "peer_unreachable",
    "remote_error",
    "upstream_code",
]

E = TypeVar("E", bound=Exception)
T = TypeVar("T")

# Codes of a call that a later call may well not meet: the peer was busy, down or restarting
# (TRANSIENT_CODES) or the connection broke mid-call (STREAM_BREAK_CODES).
CURABLE_CODES: frozenset[grpc.StatusCode] = TRANSIENT_CODES | STREAM_BREAK_CODES

DEFAULT_MAX_CHANNELS = 64
DEFAULT_CLOSE_GRACE_SECONDS = 30.0


def peer_unreachable(error: BaseException) -> bool:
    """True for a call that never reached the peer: UNAVAILABLE without an ErrorInfo reason.

    A Tendril service that answers UNAVAILABLE itself (it is stopping, a peer of its own is
    down) always gives a reason; its channel is fine and is kept.
    """
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() == grpc.StatusCode.UNAVAILABLE
        and not error_reason(error)
    )


# -- channels ------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Entry:
    address: str
    channel: grpc.aio.Channel
    users: int = 0  # `using` blocks that hold the channel now
    retired: bool = False


class ChannelPool:
    """One channel per address, every call named as ``peer_id``.

    * ``channel(address)`` — the address's channel, for calls started at once. A channel is
      opened on first use and kept while it is among the ``max_channels`` used most recently
      (None: no bound).
    * ``using(address)`` — a ``with`` block that holds the channel for as long as it runs
      (a stream, several calls in a row): a channel is never closed under a block that holds
      it. A call in the block that could not reach the peer (:func:`peer_unreachable`) drops
      the channel, so the next call dials afresh.
    * ``retire(address)`` — drop the address's channel now (a watch broke, say).

    NOTE: a channel that once failed to connect sits in gRPC's reconnect backoff and fails
    every call at once until it ends; a peer that comes back (restarted, replaced) must get
    the very next call, so a channel that could not reach its peer is retired, not reused.

    A retired channel (dropped, or pushed out of the LRU) is closed once no ``using`` block
    holds it; calls made on it through ``channel()`` get ``close_grace`` seconds to finish.
    """

    def __init__(
        self,
        peer_id: str,
        *,
        max_channels: int | None = DEFAULT_MAX_CHANNELS,
        close_grace: float = DEFAULT_CLOSE_GRACE_SECONDS,
        opener: Callable[..., grpc.aio.Channel] = open_channel,
    ) -> None:
        if max_channels is not None and max_channels < 1:
            raise ValueError(f"max_channels must be >= 1 or None, got {max_channels}")
        self.peer_id = peer_id
        self.max_channels = max_channels
        self.close_grace = close_grace
        self._open = opener
        self._live: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._held: set[_Entry] = set()  # retired, still held by `using` blocks
        self._closing: dict[_Entry, asyncio.Task[None]] = {}

    @property
    def addresses(self) -> list[str]:
        """Addresses with a live channel, least recently used first."""
        return list(self._live)

    def _entry(self, address: str) -> _Entry:
        entry = self._live.get(address)
        if entry is None:
            entry = self._live[address] = _Entry(address, self._open(address, peer_id=self.peer_id))
            while self.max_channels is not None and len(self._live) > self.max_channels:
                self._retire(self._live.popitem(last=False)[1])
        self._live.move_to_end(address)
        return entry

    def channel(self, address: str) -> grpc.aio.Channel:
        """The channel to ``address``, for calls started now (see the class docstring)."""
        return self._entry(address).channel

    @contextlib.contextmanager
    def using(self, address: str) -> Iterator[grpc.aio.Channel]:
        """Hold the channel to ``address`` for the block; drop it when a call could not reach the peer."""
        entry = self._entry(address)
        entry.users += 1
        try:
            yield entry.channel
        except grpc.aio.AioRpcError as exc:
            if peer_unreachable(exc) and self._live.get(address) is entry:
                del self._live[address]
                self._retire(entry)
            raise
        finally:
            entry.users -= 1
            if entry.retired and entry.users == 0 and entry in self._held:
                self._held.discard(entry)
                self._close_later(entry)

    def retire(self, address: str) -> None:
        """Drop the channel to ``address``: the next call dials afresh."""
        entry = self._live.pop(address, None)
        if entry is not None:
            self._retire(entry)

    def _retire(self, entry: _Entry) -> None:
        entry.retired = True
        if entry.users:
            self._held.add(entry)
        else:
            self._close_later(entry)

    def _close_later(self, entry: _Entry) -> None:
        task = asyncio.get_running_loop().create_task(entry.channel.close(grace=self.close_grace))
        self._closing[entry] = task
        task.add_done_callback(lambda _: self._closing.pop(entry, None))

    async def close(self, grace: float | None = None) -> None:
        """Close every channel, retired ones included; calls still running get ``grace`` seconds."""
        entries = [*self._live.values(), *self._held, *self._closing]
        pending = list(self._closing.values())
        self._live.clear()
        self._held.clear()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for entry in entries:
            with contextlib.suppress(Exception):
                await entry.channel.close(grace=grace)


# -- remote errors -------------------------------------------------------------------------------


ReasonFor = str | Callable[[ErrorKind, grpc.StatusCode], str]


def _pick(reason: ReasonFor, kind: ErrorKind, code: grpc.StatusCode) -> str:
    return reason if isinstance(reason, str) else reason(kind, code)


def remote_error(
    error: grpc.aio.AioRpcError,
    peer: str,
    error_type: Callable[..., E],
    *,
    address: str = "",
    reason: ReasonFor | None = None,
    no_reason: ReasonFor | None = None,
    refused: ErrorKind | None = None,
) -> E:
    """A failed call to ``peer`` ("scheduler at HOST:PORT") as the calling service's error.

    ``error_type`` is the service's TendrilError subclass (or any factory called as
    ``error_type(kind, message, reason=..., metadata=...)``). The one rule:

    * **Passed on** (no ``reason``): the peer's ErrorInfo reason and metadata are the
      answer, with the kind of its status code (:func:`~tendril.core.errors.kind_for_status`:
      CANCELLED and UNKNOWN — a call that broke off — are UNAVAILABLE, UNIMPLEMENTED is
      FAILED_PRECONDITION). A peer that gave no reason (it was not reached, the stream broke,
      the deadline passed, it is not a Tendril service) gets the service's ``no_reason``
      (e.g. the bridge's ``REMOTE_<CODE>``); without one, the kind's name.
    * **In the service's own words** (``reason`` given, a reason or a function of the kind
      and code): what the caller can do decides the kind — UNAVAILABLE for every code a
      retry may cure (:data:`CURABLE_CODES`, whether or not the peer gave a reason), else
      ``refused`` (default: the kind of the code). The peer's reason is kept in metadata.

    Metadata always names the peer (``peer`` = ``address``), its code (``upstream_code``)
    and its reason (``upstream_reason``, when it gave one); keys the peer set itself win, so
    a failure passed along several services names the first peer that failed.
    """
    code = error.code()
    details = " ".join((error.details() or "").split()) or code.name
    peer_reason = error_reason(error)
    if reason is None:
        kind = kind_for_status(code)
        answer = peer_reason or (_pick(no_reason, kind, code) if no_reason is not None else "")
        metadata = error_metadata(error) if peer_reason else {}
    else:
        kind = ErrorKind.UNAVAILABLE if code in CURABLE_CODES else (refused or kind_for_status(code))
        answer = _pick(reason, kind, code)
        metadata = {}
    if address:
        metadata.setdefault("peer", address)
    metadata.setdefault("upstream_code", code.name)
    if peer_reason:
        metadata.setdefault("upstream_reason", peer_reason)
    if not peer_reason and code in CURABLE_CODES:
        message = f"{peer} did not answer ({code.name}: {details}); check that it runs, then retry"
    else:
        message = f"{peer} answered {code.name}: {details}"
    return error_type(kind, message, reason=answer, metadata=metadata)


def upstream_code(error: TendrilError) -> grpc.StatusCode:
    """The status code of the peer behind an error made by :func:`remote_error` (else its own)."""
    name = error.metadata.get("upstream_code", "")
    return grpc.StatusCode[name] if name in grpc.StatusCode.__members__ else error.status_code


# -- following a stream --------------------------------------------------------------------------


async def follow(
    open_once: Callable[[Callable[[], None]], Awaitable[T | None]],
    *,
    name: str,
    peer: str,
    policy: RetryPolicy,
    log: Any,
    on_break: Callable[[], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """Open a stream with ``await open_once(live)`` again and again, until it returns a result.

    ``open_once`` opens the stream, calls ``live()`` once the peer accepted it (a healthy
    stream) and returns None when the stream ended (it is opened again) or a result (returned
    here). A failure ``policy`` retries is a break, as is a stream that ended: ``on_break()``
    runs, then the stream is opened again after the policy's next delay. A healthy stream
    starts the delays over, and with them the policy's ``attempts`` (opens in a row that
    failed before the stream was live) and ``deadline`` (seconds since the last healthy
    stream). Other failures, and a failure past those limits, are raised.

    It logs ``<name>.watching`` (info) each time a stream is live and ``<name>.watch_broken``
    (warning: the peer, the code and details or "ended", and the delay) at each break.
    """
    backoff = policy.backoff(rand)
    breaks, since = 0, clock()
    while True:
        healthy = False

        def live() -> None:
            nonlocal healthy
            if not healthy:
                healthy = True
                log.info(f"{name}.watching", peer=peer)

        failure: Exception | None = None
        try:
            result = await open_once(live)
            if result is not None:
                return result
        except Exception as exc:
            if not policy.retryable(exc):
                raise
            failure = exc
        if healthy:  # it worked until now: start over gently
            backoff.reset()
            breaks, since = 0, clock()
        else:
            breaks += 1  # opens in a row that never got a healthy stream
        delay = backoff.next()
        if failure is not None and (
            (policy.attempts is not None and breaks >= policy.attempts)
            or (policy.deadline is not None and clock() + delay - since > policy.deadline)
        ):
            raise failure
        if isinstance(failure, grpc.aio.AioRpcError):
            why = {"code": failure.code().name, "details": failure.details()}
        elif failure is not None:
            why = {"code": type(failure).__name__, "details": str(failure)}
        else:
            why = {"code": "OK", "details": "the peer ended the stream"}
        log.warning(f"{name}.watch_broken", peer=peer, retry_in=round(delay, 3), **why)
        if on_break is not None:
            on_break()
        await sleep(delay)
