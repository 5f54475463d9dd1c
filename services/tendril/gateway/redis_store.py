"""``gateway.backend = "redis"``: bus and registry in one Redis server, shared by every gateway on it.

A gateway over Redis holds no state of its own: a record put through gateway A is read,
listed and watched through gateway B, and a message published on A reaches subscribers on B.
The client is redis-py's asyncio API (:mod:`redis.asyncio`).

Keys (``P`` is ``gateway.redis_prefix``, default ``tendril:``; ``M`` is a record's member
name ``<byte length of kind>:<kind>:<id>``, unambiguous whatever the kind holds):

==========================  ==============================================================
``P rec:M``                 string: the whole serialized ``tendril.gateway.v1.Record``
                            (any field it gains is kept), TTL = the record's TTL +
                            :data:`EXPIRY_GRACE_SECONDS`
``P exp``                   sorted set M -> expires_at (ms): what the sweepers expire
``P idx:<kind>``            sorted set of ids (score 0, so ordered by id) of live records
``P kinds``                 sorted set of kinds that have live records (score 0)
``P events``                stream of changes: ``t`` = put | deleted | expired, ``r`` = the
                            record; capped near :data:`EVENTS_MAXLEN` entries
``P bus:<topic>``           pub/sub channel: serialized ``Envelope``\\ s
``P subs:<topic>``          hash gateway instance -> its subscribers of the topic
``P gateways``              sorted set gateway instance -> last heartbeat (ms)
==========================  ==============================================================

Why this shape:

* **Watches follow a stream, not keyspace notifications.** A notification names a key but
  not its content, which a DELETED or EXPIRED event must carry, and it needs
  ``notify-keyspace-events`` (a CONFIG SET that managed Redis servers refuse). Every change
  is appended to ``P events`` in the same transaction (or script) as the change itself, so
  the stream's order is the order of the changes; a watch takes its snapshot and the
  stream position in one script and then follows the stream.
* **Expiry is decided by the records' ``expires_at``** (the ``P exp`` set), as in the memory
  registry: every gateway's sweeper runs one script that removes the due records and appends
  one EXPIRED event each (a script is atomic: one event per expiry, whatever number of
  gateways sweep). The record key's own TTL, a grace period longer, only cleans up after a
  network whose gateways all stopped; readers never see a record past its ``expires_at``.
* **Versions** come from the stored record: Put reads it under WATCH and writes version+1 in
  a MULTI, so two gateways putting the same record never give out one version twice.
* **Limits and ownership** are the memory registry's own rules (:mod:`tendril.gateway.registry`:
  ``check_put``, ``next_entry``, ``check_owner``), applied to what Put read under that WATCH: the
  owner and the secret's sha256 travel in the stored record, so a concurrent write by another
  gateway makes EXEC fail and the owner is checked again on the new content (of many callers
  creating one record at once exactly one owns it). Delete is a compare-and-delete script on
  the bytes whose owner was checked. List pages walk ``idx:<kind>`` (and ``kinds``) with
  ZRANGEBYLEX after the (kind, id) the page token names, the memory registry's token.
* **The bus is pub/sub**: messages are not kept (as in the memory bus, a subscriber gets what
  is published while it is subscribed). Each gateway subscribes to a topic's channel once
  and fans it out to its own subscribers through bounded queues (:class:`TopicBus`).

Requirements on the server: Redis >= 5 (streams), Lua scripting (EVALSHA), pub/sub; one
database of one server (or a Sentinel-managed primary), not Redis Cluster (scripts touch keys
they compute). Nothing has to be configured on it.

A Redis that goes away: every call fails with UNAVAILABLE ``BACKEND_UNAVAILABLE`` naming the
server and the error, open Subscribe and Watch streams end with it (clients re-subscribe,
on this or another gateway), and the gateway reconnects by itself when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError

from tendril.core import liveness
from tendril.core.errors import ErrorKind
from tendril.core.fanout import Fanout, Overflow, Subscription, SubscriptionOverflow
from tendril.core.logs import get_logger
from tendril.core.watch import Watch
from tendril.gateway.bus import DEFAULT_QUEUE_SIZE, TopicBus, check_topic
from tendril.gateway.errors import GatewayError, GatewayReason
from tendril.gateway.registry import (
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_WATCH_QUEUE,
    MAX_SWEEP_SLEEP,
    Caller,
    Entry,
    RecordEvent,
    RecordEventType,
    Stored,
    check_name,
    check_owner,
    check_put,
    decode_token,
    encode_token,
    next_entry,
    page_limit,
)
from tendril.gateway.store import BackendLost, BusStore, RegistryStore, record_from_proto, record_to_proto
from tendril_proto.gateway.v1 import gateway_pb2
from tendril_sdk.retry import Backoff

log = get_logger("tendril.gateway.redis")

DEFAULT_PREFIX = "tendril:"
# NOTE: the record key outlives its expires_at by this much, so the sweeper that emits EXPIRED
# still finds the content; past it Redis drops the key itself (no gateway left to sweep).
EXPIRY_GRACE_SECONDS = 60.0
EVENTS_MAXLEN = 100_000  # stream entries kept (approximate trim): a watch catches up from its snapshot
SWEEP_BATCH = 500  # due records expired per script call (the script blocks Redis while it runs)
SOCKET_TIMEOUT_SECONDS = 5.0
MAX_CONNECTIONS = 1024  # to Redis, per gateway, at once (Redis' own default limit is 10,000 clients)
# NOTE: a blocking read waits at most this long: redis-py finishes a read it started even when
# its task is cancelled, so the readers stop on a flag they check between reads.
BLOCK_MS = 250
HEARTBEAT_SECONDS = 1.0  # a gateway's entry in P gateways is refreshed this often ...
STALE_GATEWAY_SECONDS = 10.0  # ... and its subscriber counts ignored once this old
RECONNECT_MAX_SECONDS = 2.0

# Due records out: delete each, drop it from the indexes, append EXPIRED with its content.
# KEYS: exp, kinds, events. ARGV: now (ms), prefix, stream maxlen, batch.
_SWEEP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, m in ipairs(due) do
  local key = ARGV[2] .. 'rec:' .. m
  local r = redis.call('GET', key)
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], m)
  local colon = string.find(m, ':', 1, true)
  local n = tonumber(string.sub(m, 1, colon - 1))
  local kind = string.sub(m, colon + 1, colon + n)
  local idx = ARGV[2] .. 'idx:' .. kind
  redis.call('ZREM', idx, string.sub(m, colon + n + 2))
  if redis.call('ZCARD', idx) == 0 then redis.call('ZREM', KEYS[2], kind) end
  if r then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 't', 'expired', 'r', r)
    out[#out + 1] = r
  end
end
return out
"""

# Compare-and-delete: only the record as the caller read it (and checked its owner of) goes.
# Returns 0 when it is gone, 1 when deleted, 2 when it changed since it was read.
# KEYS: rec, exp, idx, kinds, events. ARGV: member, id, kind, stream maxlen, record as read.
_DELETE = """
local r = redis.call('GET', KEYS[1])
if not r then return 0 end
if r ~= ARGV[5] then return 2 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('ZREM', KEYS[4], ARGV[3]) end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 't', 'deleted', 'r', r)
return 1
"""

# The last stream id, then every stored record of a kind (all kinds when ARGV[2] is empty),
# in (kind, id) order: one atomic point, so a watch follows the stream from exactly there.
# KEYS: kinds, events. ARGV: prefix, kind.
_SNAPSHOT = """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local out = {'0-0'}
if #last > 0 then out[1] = last[1][1] end
local kinds
if ARGV[2] ~= '' then kinds = {ARGV[2]} else kinds = redis.call('ZRANGE', KEYS[1], 0, -1) end
for _, k in ipairs(kinds) do
  for _, id in ipairs(redis.call('ZRANGE', ARGV[1] .. 'idx:' .. k, 0, -1)) do
    local r = redis.call('GET', ARGV[1] .. 'rec:' .. string.len(k) .. ':' .. k .. ':' .. id)
    if r then out[#out + 1] = r end
  end
end
return out
"""

# Publish, then count the subscribers of every gateway whose heartbeat is fresh.
# KEYS: channel, subs hash, gateways. ARGV: message, oldest fresh heartbeat (ms).
_PUBLISH = """
redis.call('PUBLISH', KEYS[1], ARGV[1])
local counts = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #counts, 2 do
  local seen = redis.call('ZSCORE', KEYS[3], counts[i])
  if seen and tonumber(seen) >= tonumber(ARGV[2]) then
    out[#out + 1] = counts[i]
    out[#out + 1] = counts[i + 1]
  end
end
return out
"""


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def connect(url: str) -> aioredis.Redis:
    """A client (connection pool) for ``url``; nothing is sent until the first command."""
    return aioredis.Redis.from_url(
        url,
        # NOTE: redis-py's default pool of 100 connections fails with "Too many connections"
        # when a thousand workers subscribe or refresh at once (each call holds one meanwhile).
        max_connections=MAX_CONNECTIONS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        # NOTE: one quick retry (a pooled connection that died with a restarted Redis is
        # replaced); the default retries for many seconds, and a caller waits on every one.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
    )


def member(kind: str, record_id: str) -> str:
    return f"{len(kind.encode())}:{kind}:{record_id}"


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclasses.dataclass(frozen=True)
class StreamEvent(RecordEvent):
    """A change read from the events stream, with its position there."""

    position: tuple[int, int] = (0, 0)


class _Backend:
    """Error mapping and liveness shared by the Redis bus and registry."""

    def __init__(self, client: aioredis.Redis, url: str) -> None:
        self.client = client
        self.url = redacted(url)
        self.live = False  # the background follower is connected and caught up

    def unavailable(self, cause: BaseException | str) -> GatewayError:
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"the gateway's Redis at {self.url} is unavailable ({cause}); the gateway reconnects by itself "
            "when Redis is back: retry later or use another gateway",
            reason=GatewayReason.BACKEND_UNAVAILABLE,
        )

    @contextlib.asynccontextmanager
    async def calls(self) -> AsyncIterator[None]:
        """Redis failures (connection, timeout, read-only replica, ...) -> UNAVAILABLE BACKEND_UNAVAILABLE."""
        try:
            yield
        except (RedisError, OSError) as exc:
            raise self.unavailable(f"{type(exc).__name__}: {exc}") from exc

    def check_live(self, what: str) -> None:
        if not self.live:
            raise self.unavailable(f"{what} not connected yet")


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a reader and wait for it: it ends at its next check of the stop flag at the latest."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), BLOCK_MS / 1000 + SOCKET_TIMEOUT_SECONDS)


class RedisRegistry(RegistryStore):
    """The registry in Redis (see the module doc for the keys and why)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        watch_queue: int = DEFAULT_WATCH_QUEUE,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_page: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.max_record_bytes = max_record_bytes
        self.max_page = max_page
        self.default_page = min(DEFAULT_PAGE_SIZE, max_page)
        self._writes = 0
        self._redis = _Backend(client, url)
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._watch_queue = watch_queue
        self._exp = f"{prefix}exp"
        self._kinds = f"{prefix}kinds"
        self._events = f"{prefix}events"
        self._sweep = client.register_script(_SWEEP)
        self._delete = client.register_script(_DELETE)
        self._snapshot = client.register_script(_SNAPSHOT)
        self._watchers: Fanout[RecordEvent] = Fanout()
        self._changed = asyncio.Event()
        self._position = b"0-0"
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False

    # -- operations --------------------------------------------------------------------------

    def _rec(self, kind: str, record_id: str) -> str:
        return f"{self._prefix}rec:{member(kind, record_id)}"

    @property
    def writes(self) -> int:
        return self._writes

    async def put_as(
        self,
        kind: str,
        record_id: str,
        payload: object,
        ttl_seconds: float,
        *,
        caller: Caller | None = None,
        size: int = 0,
    ) -> Stored:
        check_put(kind, record_id, ttl_seconds, size, self.max_record_bytes)
        await self.expire_due()
        key = self._rec(kind, record_id)
        async with self._redis.calls(), self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    old = await pipe.get(key)
                    now = self._clock()
                    previous = record_from_proto(gateway_pb2.Record.FromString(old)) if old else None
                    live = previous if previous is not None and previous.expires_at > now else None
                    # NOTE: the owner is checked (or a record past its expiry claimed) on what this
                    # WATCH read: if another gateway writes the record before EXEC, EXEC fails and
                    # both the check and the claim are made again on the new content. A refusal
                    # leaves through the pipeline's exit, which drops the WATCH.
                    entry, secret = next_entry(
                        live,
                        caller,
                        kind=kind,
                        record_id=record_id,
                        payload=payload,
                        ttl_seconds=ttl_seconds,
                        now=now,
                    )
                    data = record_to_proto(entry, with_secret_hash=True).SerializeToString()
                    pipe.multi()
                    pipe.set(key, data, px=int((ttl_seconds + EXPIRY_GRACE_SECONDS) * 1000))
                    pipe.zadd(self._exp, {member(kind, record_id): entry.expires_at * 1000})
                    pipe.zadd(f"{self._prefix}idx:{kind}", {record_id: 0})
                    pipe.zadd(self._kinds, {kind: 0})
                    pipe.xadd(self._events, {"t": "put", "r": data}, maxlen=EVENTS_MAXLEN, approximate=True)
                    await pipe.execute()
                    break
                except WatchError:
                    continue  # another gateway changed the record meanwhile: read it again
        self._writes += 1
        self._changed.set()
        return Stored(entry, secret)

    async def get(self, kind: str, record_id: str) -> Entry:
        return (await self._live(kind, record_id))[0]

    async def _live(self, kind: str, record_id: str) -> tuple[Entry, bytes]:
        """The live record and its stored bytes, or NOT_FOUND."""
        check_name("kind", kind)
        check_name("id", record_id)
        await self.expire_due()
        async with self._redis.calls():
            data = await self._client.get(self._rec(kind, record_id))
        entry = record_from_proto(gateway_pb2.Record.FromString(data)) if data else None
        if entry is None or data is None or entry.expires_at <= self._clock():
            raise GatewayError(
                ErrorKind.NOT_FOUND,
                f"no live record {kind}/{record_id}: it was never put, was deleted, or its TTL ran out "
                "(List shows the live records)",
                reason=GatewayReason.RECORD_NOT_FOUND,
                metadata={"kind": kind, "id": record_id},
            )
        return entry, data

    async def _take_snapshot(self, kind: str) -> tuple[tuple[int, int], list[Entry]]:
        await self.expire_due()
        async with self._redis.calls():
            reply = await self._snapshot(keys=[self._kinds, self._events], args=[self._prefix, kind])
        now = self._clock()
        entries = (record_from_proto(gateway_pb2.Record.FromString(raw)) for raw in reply[1:])
        live = sorted((e for e in entries if e.expires_at > now), key=lambda e: (e.kind, e.id))
        return _stream_id(reply[0]), live

    async def records(self, kind: str = "") -> list[Entry]:
        return (await self._take_snapshot(kind))[1]

    async def page(self, kind: str = "", page_size: int = 0, page_token: str = "") -> tuple[list[Entry], str]:
        """One page in (kind, id) order, read from the ``idx:<kind>`` sets by range after the token.

        The token names the last record returned (:func:`encode_token`, the memory registry's
        own), so the next page starts right after it however the records changed meanwhile,
        and any gateway on this Redis continues a List another one began. The ``idx`` and
        ``kinds`` sets have one score, so ZRANGEBYLEX walks them in byte order, which is the
        order of the memory registry's sorted strings.
        """
        size = page_limit(page_size, self.default_page, self.max_page)
        after = decode_token(kind, page_token) if page_token else None
        await self.expire_due()
        now = self._clock()
        found: list[Entry] = []
        async with self._redis.calls():
            if kind:
                kinds = [kind]
            else:
                low = f"[{after[0]}" if after else "-"
                kinds = [k.decode() for k in await self._client.zrangebylex(self._kinds, low, "+")]
            for listed in kinds:
                if after and listed.encode() < after[0].encode():
                    continue  # a token from before this kind (only a hand-made one)
                low = f"({after[1]}" if after and listed == after[0] else "-"
                while len(found) <= size:
                    want = size + 1 - len(found)  # one more than the page: is there a next page?
                    ids = [
                        i.decode()
                        for i in await self._client.zrangebylex(f"{self._prefix}idx:{listed}", low, "+", 0, want)
                    ]
                    if not ids:
                        break
                    datas = await self._client.mget([self._rec(listed, i) for i in ids])
                    for raw in datas:
                        # NOTE: a record past its expiry (not swept yet) or gone since the range read is skipped.
                        entry = record_from_proto(gateway_pb2.Record.FromString(raw)) if raw else None
                        if entry is not None and entry.expires_at > now:
                            found.append(entry)
                    low = f"({ids[-1]}"
                    if len(ids) < want:
                        break
                if len(found) > size:
                    break
        page = found[:size]
        return page, encode_token(kind, page[-1]) if len(found) > size else ""

    async def delete(self, kind: str, record_id: str, *, caller: Caller | None = None) -> Entry:
        idx = f"{self._prefix}idx:{kind}"
        keys = [self._rec(kind, record_id), self._exp, idx, self._kinds, self._events]
        while True:
            entry, data = await self._live(kind, record_id)
            check_owner(entry, caller, "delete")
            async with self._redis.calls():
                done = await self._delete(
                    keys=keys, args=[member(kind, record_id), record_id, kind, EVENTS_MAXLEN, data]
                )
            if done == 1:
                self._writes += 1
                return entry
            # 0: expired or deleted through another gateway since the read (the next read says
            # NOT_FOUND); 2: rewritten meanwhile, so its owner is checked again on what it is now.

    async def watch(self, kind: str = "", name: str = "") -> Watch[RecordEvent]:
        self._redis.check_live("the registry's event stream is")

        def accepts(event: RecordEvent) -> bool:
            return not kind or event.entry.kind == kind

        # NOTE: subscribe before the snapshot: the follower has delivered the stream up to a
        # position no later than the snapshot's, so this buffer holds every change after the
        # snapshot (and some before it, dropped by position below). No change can fall between.
        buffer = self._watchers.subscribe(
            maxsize=self._watch_queue, overflow=Overflow.CLOSE, name=name, accepts=accepts
        )
        try:
            position, entries = await self._take_snapshot(kind)
            early: list[RecordEvent] = []
            while len(buffer):
                event = await buffer.get()  # queued: returns without suspending
                if isinstance(event, StreamEvent) and event.position > position:
                    early.append(event)
            if buffer.closed:
                await buffer.get()  # raises why (overflow, backend lost)
        except SubscriptionOverflow as exc:
            raise _overflow_error(exc) from exc
        finally:
            self._watchers.unsubscribe(buffer)
        snapshot = [RecordEvent(RecordEventType.EXISTING, e) for e in entries] + early
        return Watch(
            self._watchers,
            lambda: snapshot,
            queue=self._watch_queue,
            overflow=_overflow_error,
            name=name,
            accepts=accepts if kind else None,
        )

    # -- expiry ------------------------------------------------------------------------------

    async def expire_due(self) -> list[Entry]:
        """Remove every record whose TTL ran out; each emits EXPIRED (through the stream)."""
        expired: list[Entry] = []
        async with self._redis.calls():
            while True:
                batch = await self._sweep(
                    keys=[self._exp, self._kinds, self._events],
                    args=[int(self._clock() * 1000), self._prefix, EVENTS_MAXLEN, SWEEP_BATCH],
                )
                expired += [record_from_proto(gateway_pb2.Record.FromString(raw)) for raw in batch]
                if len(batch) < SWEEP_BATCH:
                    break
        for entry in expired:
            log.info("registry.expired", kind=entry.kind, id=entry.id, ttl_seconds=entry.ttl_seconds)
        return expired

    async def next_expiry(self) -> float | None:
        async with self._redis.calls():
            first: Any = await self._client.zrange(self._exp, 0, 0, withscores=True)
        return float(first[0][1]) / 1000 if first else None

    async def run_sweeper(self) -> None:
        """Expire records on time (one script call when due), forever; cancel to stop."""
        failing = False
        while True:
            liveness.beat()
            try:
                await self.expire_due()
                nxt = await self.next_expiry()
                if failing:
                    log.info("registry.redis_back", redis=self._redis.url)
                failing = False
            except GatewayError as exc:
                if not failing:
                    log.warning("registry.sweep_failed", error=exc.message)
                failing = True
                nxt = None
            sleep = MAX_SWEEP_SLEEP if nxt is None else min(max(nxt - self._clock(), 0.0), MAX_SWEEP_SLEEP)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=sleep)

    # -- the events stream -------------------------------------------------------------------

    async def start(self) -> None:
        self._follower = asyncio.create_task(self._follow(), name="registry-events")
        for _ in range(100):  # a gateway starts serving once it reads the stream (or Redis is down)
            if self._redis.live:
                return
            await asyncio.sleep(0.02)

    async def _follow(self) -> None:
        attempt, backoff = 0, Backoff(0.05, RECONNECT_MAX_SECONDS)
        while not self._stopping:
            try:
                if not self._redis.live:
                    # NOTE: from the tail: every watch was ended when the stream was lost, and
                    # a new one is refused until this point, so nobody misses what came between.
                    last: Any = await self._client.xrevrange(self._events, count=1)
                    self._position = last[0][0] if last else b"0-0"
                    self._redis.live = True
                    if attempt:
                        log.info("registry.redis_back", redis=self._redis.url)
                    attempt = 0
                    backoff.reset()
                reply: Any = await self._client.xread({self._events: self._position}, block=BLOCK_MS, count=1000)
                for _stream, items in reply or ():
                    self._deliver(items)
            except (RedisError, OSError) as exc:
                if self._redis.live:
                    log.warning("registry.redis_lost", redis=self._redis.url, error=str(exc))
                    self._watchers.close_all(BackendLost(self._redis.unavailable(f"{type(exc).__name__}: {exc}")))
                self._redis.live = False
                await asyncio.sleep(backoff.next())
                attempt += 1

    def _deliver(self, items: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for raw_id, fields in items:
            self._position = raw_id
            kind = {
                b"put": RecordEventType.PUT,
                b"deleted": RecordEventType.DELETED,
                b"expired": RecordEventType.EXPIRED,
            }
            event_type = kind.get(fields.get(b"t", b""))
            if event_type is None:
                continue
            entry = record_from_proto(gateway_pb2.Record.FromString(fields[b"r"]))
            self._watchers.publish(StreamEvent(event_type, entry, position=_stream_id(raw_id)))
            if event_type is RecordEventType.PUT:
                self._changed.set()  # another gateway's Put may expire before our sweeper's next wake-up

    async def close(self) -> None:
        self._stopping = True
        if self._follower is not None:
            await _stop(self._follower)
            self._follower = None
        self._watchers.close_all()


def _overflow_error(exc: SubscriptionOverflow) -> GatewayError:
    if isinstance(exc, BackendLost):
        return exc.error
    return GatewayError(
        ErrorKind.ABORTED,
        f"{exc}; start a new Watch (it begins with EXISTING for every live record)",
        reason=GatewayReason.WATCH_OVERFLOW,
    )


class RedisBus(BusStore):
    """The bus on Redis pub/sub: one channel per topic, fanned out here to this gateway's subscribers."""

    def __init__(
        self, client: aioredis.Redis, *, url: str, prefix: str = DEFAULT_PREFIX, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        self._redis = _Backend(client, url)
        self._client = client
        self._prefix = prefix
        self.instance = uuid.uuid4().hex  # this gateway in P gateways and P subs:<topic>
        self.local: TopicBus[gateway_pb2.Envelope] = TopicBus(queue_size=queue_size)
        self._publish = client.register_script(_PUBLISH)
        self._gateways = f"{prefix}gateways"
        self._pubsub: Any = None
        self._channels: dict[str, asyncio.Event] = {}  # channel -> set once Redis confirmed the SUBSCRIBE
        self._published = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping = False

    def _channel(self, topic: str) -> str:
        return f"{self._prefix}bus:{topic}"

    async def publish(self, topic: str, envelope: gateway_pb2.Envelope) -> int:
        check_topic(topic)
        fresh = int((time.time() - STALE_GATEWAY_SECONDS) * 1000)
        async with self._redis.calls():
            reply = await self._publish(
                keys=[self._channel(topic), f"{self._prefix}subs:{topic}", self._gateways],
                args=[envelope.SerializeToString(), fresh],
            )
        self._published += 1
        counts = {reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}
        counts[self.instance] = self.local.subscribers(topic)  # ours, exact now
        return sum(counts.values())

    async def subscribe(self, topic: str, subscriber: str = "") -> Subscription[gateway_pb2.Envelope]:
        check_topic(topic)
        self._redis.check_live("the bus's pub/sub connection is")
        sub = self.local.subscribe(topic, subscriber)  # first: nothing delivered after the SUBSCRIBE is lost
        channel = self._channel(topic)
        try:
            confirmed = self._channels.get(channel)
            if confirmed is None:
                confirmed = self._channels[channel] = asyncio.Event()
                async with self._redis.calls():
                    await self._pubsub.subscribe(channel)
            # NOTE: once Redis confirms the SUBSCRIBE, every later PUBLISH (any gateway) reaches us.
            await asyncio.wait_for(confirmed.wait(), SOCKET_TIMEOUT_SECONDS)
            await self._count(topic)
        except (GatewayError, TimeoutError) as exc:
            self.local.unsubscribe(topic, sub)
            if not (confirmed := self._channels.get(channel)) or not confirmed.is_set():
                self._channels.pop(channel, None)  # the next subscriber sends SUBSCRIBE again
            if isinstance(exc, GatewayError):
                raise
            raise self._redis.unavailable("no answer to SUBSCRIBE") from exc
        return sub

    def unsubscribe(self, topic: str, sub: Subscription[gateway_pb2.Envelope]) -> None:
        self.local.unsubscribe(topic, sub)
        # NOTE: the channel stays subscribed (cheap; the next subscriber needs no round trip);
        # the count other gateways add up in Publish is updated in the background.
        self._background(self._count(topic))

    def subscribers(self, topic: str) -> int:
        return self.local.subscribers(topic)

    async def _count(self, topic: str) -> None:
        async with self._redis.calls():
            await self._client.hset(f"{self._prefix}subs:{topic}", self.instance, self.local.subscribers(topic))

    def _background(self, coro: Any) -> None:
        async def quietly() -> None:
            with contextlib.suppress(GatewayError):
                await coro

        task = asyncio.get_running_loop().create_task(quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="bus-pubsub")
        self._heartbeat = asyncio.create_task(self._beat(), name="bus-heartbeat")
        for _ in range(100):
            if self._redis.live:
                return
            await asyncio.sleep(0.02)

    async def _beat(self) -> None:
        while not self._stopping:
            with contextlib.suppress(RedisError, OSError):
                await self._client.zadd(self._gateways, {self.instance: time.time() * 1000})
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _read(self) -> None:
        attempt, backoff = 0, Backoff(0.05, RECONNECT_MAX_SECONDS)
        while not self._stopping:
            try:
                if not self._redis.live:
                    self._pubsub = self._client.pubsub()
                    self._channels.clear()
                    # NOTE: a connection before serving, so a Redis that is down shows as down.
                    await self._pubsub.ping()
                    self._redis.live = True
                    if attempt:
                        log.info("bus.redis_back", redis=self._redis.url)
                    attempt = 0
                    backoff.reset()
                message = await self._pubsub.get_message(timeout=BLOCK_MS / 1000)
                if message is not None:
                    self._handle(message)
            except (RedisError, OSError) as exc:
                self._lost(exc)
                await asyncio.sleep(backoff.next())
                attempt += 1

    def _lost(self, exc: BaseException) -> None:
        if self._redis.live:
            log.warning("bus.redis_lost", redis=self._redis.url, error=str(exc))
            error = self._redis.unavailable(f"{type(exc).__name__}: {exc}")
            self.local.close(BackendLost(error))
        self._redis.live = False
        if self._pubsub is not None:
            self._background(self._pubsub.aclose())
            self._pubsub = None

    def _handle(self, message: dict[str, Any]) -> None:
        if message.get("type") == "subscribe":
            confirmed = self._channels.get(message["channel"].decode())
            if confirmed is not None:
                confirmed.set()
        elif message["type"] == "message":
            envelope = gateway_pb2.Envelope.FromString(message["data"])
            self.local.publish(envelope.topic, envelope)

    async def close(self) -> None:
        self._stopping = True
        for task in (self._reader, self._heartbeat):
            if task is not None:
                await _stop(task)
        topics = self.local.topics
        self.local.close()
        with contextlib.suppress(RedisError, OSError):
            await self._client.zrem(self._gateways, self.instance)
            for topic in topics:
                await self._client.hdel(f"{self._prefix}subs:{topic}", self.instance)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        for task in list(self._tasks):
            task.cancel()

    @property
    def published(self) -> int:
        return self._published

    @property
    def dropped(self) -> int:
        return self.local.dropped


__all__ = ["DEFAULT_PREFIX", "RedisBus", "RedisRegistry", "connect", "redacted"]
