"""The data plane: a tensor stream's payload bytes over a TCP (under mTLS, TLS) connection.

A gRPC call moves 1.3-2.5 GB/s of payload on loopback here (a copy per message on each side
plus ~100 µs per message in Python), a plain socket about 4 GB/s. So the call stays the control
channel (header, verdict, every error as a status with a reason) and the bytes take a socket:

1. the client asks in the call's metadata (:data:`REQUEST`); a server with a data port answers
   in its initial metadata with an :class:`Offer`: the port, a one-time ticket and, under TLS,
   the sha256 of the port's certificate;
2. the client connects to that port on the host its channel dials (no other address:
   :func:`channel_host`), sends :data:`MAGIC` + the ticket and reads :data:`ACCEPTED`;
3. the bytes from the stream's start offset flow (pushes: ``sendall`` from an mmap of the file,
   received with ``recv_into`` straight into the destination's memory when it offers a view;
   pulls: ``sendall`` from an mmap of the served file or from the served memory);
4. the call ends with the server's verdict.

A ticket is 32 random bytes, single use, valid :data:`TICKET_SECONDS`, and under mTLS bound to
the caller's certificate: the data connection must present a certificate with the same CN. A
connection with a wrong, used or expired ticket (or the wrong certificate) is closed before it
touches anything. Everything is bounded: open data connections (:data:`MAX_CONNECTIONS`, more
are closed at accept), tickets outstanding (:data:`MAX_TICKETS`; past that the server just makes
no offer and the call carries the bytes), the handshake (:data:`HANDSHAKE_SECONDS`) and each
wait for bytes (:data:`IDLE_SECONDS`).

Socket I/O runs blocking on threads (the GIL is released in ``recv_into``/``sendall``, and
``ssl`` sockets work the same way); the event loop hands over one piece
(:data:`PIECE_BYTES`) at a time, so the destination's bookkeeping and hashing stay on the loop.

Parallel streams (docs/WAN.md "Parallel streams"): a client may ask for several connections
(:data:`STREAMS_KEY`); the server then offers that many tickets at most (:data:`TICKETS_KEY`),
and each of those connections carries byte ranges of the payload, aligned to chunks: the client
sends a range ``(start, end)`` (:data:`RANGE`), the server answers where in it the bytes go on
(:data:`RESUME`: what it holds of the range from its start is not sent again), then those bytes
follow; the next range, or the end of the connection. Bytes land in place in the receiver's
buffer in any order; :class:`Held` keeps the ranges received beyond the contiguous prefix, and
the prefix is handed on (counted and hashed, in order, once) as it grows, so the payload's one
digest is checked exactly as for one connection.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import itertools
import mmap
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

import numpy as np
from cryptography import x509

from tendril.core import liveness
from tendril.core.config import split_address
from tendril.core.errors import PortInUseError
from tendril.core.logs import get_logger
from tendril.core.tls import TlsMaterial, certificate_name

log = get_logger("tendril.dataplane")

MAGIC = b"TNDRLDP1"
TICKET_BYTES = 32
ACCEPTED = b"\x01"

REQUEST_KEY = "tendril-data-plane"
REQUEST: tuple[tuple[str, str], ...] = ((REQUEST_KEY, "tcp"),)
PORT_KEY = "tendril-data-port"
TICKET_KEY = "tendril-data-ticket"
CERT_KEY = "tendril-data-cert-sha256"
STREAMS_KEY = "tendril-data-streams"  # request: connections the client would use (absent: 1)
TICKETS_KEY = "tendril-data-tickets"  # offer: the tickets of a ranged transfer, hex, comma-separated
RANGE = struct.Struct("!QQ")  # a range of a ranged connection: start, end (client → server)
RESUME = struct.Struct("!Q")  # where in the range the bytes go on (server → client)
MAX_STREAMS = 32  # connections one ranged transfer may ask for

TICKET_SECONDS = 5.0  # a ticket not presented by then is void
HANDSHAKE_SECONDS = 5.0  # connect, TLS handshake, ticket
IDLE_SECONDS = 60.0  # longest wait for the next bytes of a transfer
MAX_CONNECTIONS = 32  # data connections open at once (in handshake or transfer)
MAX_TICKETS = 256  # offers outstanding
PIECE_BYTES = 16 * 1024 * 1024  # bytes handed to a thread at a time
# Received into a scratch buffer at a time when the target offers no view (a file): a push holds
# about two of them (one being hashed), so 8 pushes at once hold tens of MiB, not hundreds.
SCRATCH_BYTES = 4 * 1024 * 1024


def requested(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """True when a call's metadata asks for the data plane."""
    return metadata is not None and any((key, value) == REQUEST[0] for key, value in metadata)


def request(streams: int = 1) -> tuple[tuple[str, str], ...]:
    """The metadata that asks for the data plane with ``streams`` connections (1: today's one)."""
    return REQUEST if streams <= 1 else (*REQUEST, (STREAMS_KEY, str(min(streams, MAX_STREAMS))))


def requested_streams(metadata: Iterable[tuple[str, str | bytes]] | None) -> int:
    """Connections a call's metadata asks for (1 when it names none, or nonsense)."""
    for key, value in metadata or ():
        if key == STREAMS_KEY and isinstance(value, str) and value.isdigit():
            return max(1, min(int(value), MAX_STREAMS))
    return 1


def split_ranges(start: int, end: int, parts: int, align: int) -> list[tuple[int, int]]:
    """[start, end) cut into at most ``parts`` ranges whose inner boundaries are multiples of ``align``."""
    if end <= start:
        return []
    parts = max(1, parts)
    step = -(-(end - start) // parts)
    step = -(-step // align) * align
    bounds = [start] + [b for b in range(start - start % align + step, end, step) if b > start] + [end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


class Held:
    """The byte ranges of one payload held beyond its contiguous prefix, and the ranges in flight.

    Not thread-safe: its user serialises calls (the event loop, or a lock).
    """

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []  # sorted, disjoint, not touching
        self.claims: list[tuple[int, int]] = []  # ranges being received now

    def add(self, a: int, b: int) -> None:
        """Bytes [a, b) arrived."""
        if b <= a:
            return
        spans = []
        for x, y in self.spans:
            if y < a or x > b:
                spans.append((x, y))
            else:
                a, b = min(a, x), max(b, y)
        spans.append((a, b))
        self.spans = sorted(spans)

    def advance(self, prefix: int) -> int:
        """The end of the contiguous prefix that starts at 0 and ends at ``prefix`` once the
        ranges held from there are added; those ranges are forgotten (the prefix counts them)."""
        while self.spans and self.spans[0][0] <= prefix:
            prefix = max(prefix, self.spans.pop(0)[1])
        return prefix

    def resume(self, a: int, b: int, prefix: int) -> int:
        """Where range [a, b) goes on: past the prefix and past what is held from there on."""
        at = max(a, prefix)
        for x, y in self.spans:
            if x <= at < y:
                at = y
        return min(at, b)

    def claim(self, a: int, b: int) -> bool:
        """Mark [a, b) as being received; False when it overlaps a range in flight."""
        if any(a < y and x < b for x, y in self.claims):
            return False
        self.claims.append((a, b))
        return True

    def release(self, a: int, b: int) -> None:
        with contextlib.suppress(ValueError):
            self.claims.remove((a, b))


# -- offers (both sides) ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Offer:
    """What a server offers in a call's initial metadata."""

    port: int
    ticket: bytes
    cert_sha256: str = ""  # set when the data port speaks TLS
    # A ranged transfer: every ticket (the first is ``ticket``), one connection each.
    tickets: tuple[bytes, ...] = ()

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pairs = [(PORT_KEY, str(self.port)), (TICKET_KEY, self.ticket.hex())]
        if self.cert_sha256:
            pairs.append((CERT_KEY, self.cert_sha256))
        if self.tickets:
            pairs.append((TICKETS_KEY, ",".join(t.hex() for t in self.tickets)))
        return tuple(pairs)

    @property
    def ranged(self) -> bool:
        return bool(self.tickets)

    def one(self, ticket: bytes) -> Offer:
        """The offer of one of its tickets (what :func:`connect` presents)."""
        return dataclasses.replace(self, ticket=ticket, tickets=())

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | None) -> Offer | None:
        """The offer in a call's initial metadata; None when there is none (or it is malformed)."""
        values = {key: value for key, value in metadata or () if isinstance(value, str)}
        port, ticket = values.get(PORT_KEY, ""), values.get(TICKET_KEY, "")
        cert = values.get(CERT_KEY, "")
        try:
            tickets = tuple(bytes.fromhex(t) for t in values.get(TICKETS_KEY, "").split(",") if t)
            offer = cls(int(port), bytes.fromhex(ticket), cert, tickets)
        except ValueError:
            return None
        if not 0 < offer.port < 65536 or len(offer.ticket) != TICKET_BYTES or (cert and len(cert) != 64):
            return None
        if any(len(t) != TICKET_BYTES for t in tickets) or len(tickets) > MAX_STREAMS:
            return None
        if tickets and offer.ticket != tickets[0]:
            return None
        return offer


_SCHEMES = ("dns:///", "dns:", "ipv4:", "ipv6:")


def channel_host(channel: Any) -> str | None:
    """The host a grpc.aio channel dials (name or IP); None for Unix sockets and unknown shapes.

    # NOTE: grpc.aio has no public accessor for a channel's target, nor for a client call's
    # peer; the target is read from the channel's core object (grpcio is pinned, and the
    # data-plane tests fail, not fall back quietly, if that ever changes).
    """
    raw = getattr(getattr(channel, "_channel", None), "target", None)
    if not isinstance(raw, bytes):
        return None
    target = raw.decode(errors="replace")
    for scheme in _SCHEMES:
        if target.startswith(scheme):
            target = target[len(scheme) :].split(",")[0]
            break
    if target.startswith(("unix:", "unix-abstract:", "vsock:")):
        return None
    try:
        host, _ = split_address(target)
    except ValueError:
        return None
    return host


# -- moving bytes (blocking; run on threads) ------------------------------------------------------


def recv_exactly(sock: socket.socket, view: memoryview) -> int:
    """Fill ``view`` from ``sock``; returns the bytes received (fewer when the peer stopped or went quiet)."""
    got = 0
    with contextlib.suppress(OSError):  # a timeout, a reset: a cut (the caller resumes from ``got``)
        while got < len(view):
            n = sock.recv_into(view[got:])
            if not n:
                break
            got += n
    return got


def send_range(
    sock: socket.socket,
    view: memoryview,
    start: int,
    end: int,
    *,
    mapping: mmap.mmap | None = None,
    sent: Callable[[int], None] | None = None,
) -> None:
    """``sendall`` bytes [start, end) of ``view`` piece by piece; ``sent(upto)`` after each piece.

    # NOTE: not ``sendfile``: on this loopback, sendfile of a cached 1 GiB file ran at 2.2-2.4 GB/s
    # with 0.44-0.49 CPU s on the sender, sendall of its mmap at 3.1-3.3 GB/s with 0.28-0.30 s.
    # Pages of a ``mapping`` already sent are dropped from this process's mapping (they stay in
    # the page cache), so serving a model holds a piece of it in RSS, not all of it.
    """
    dropped = start - start % mmap.PAGESIZE
    for a in range(start, end, PIECE_BYTES):
        b = min(end, a + PIECE_BYTES)
        sock.sendall(view[a:b])
        if sent is not None:
            sent(b)
        if mapping is not None:
            upto = b - b % mmap.PAGESIZE
            with contextlib.suppress(OSError):
                mapping.madvise(mmap.MADV_DONTNEED, dropped, upto - dropped)
            dropped = upto


def _hello(sock: socket.socket) -> tuple[bytes, str]:
    """Read MAGIC + ticket; returns (ticket, the CN of the peer's certificate or "")."""
    hello = bytearray(len(MAGIC) + TICKET_BYTES)
    if recv_exactly(sock, memoryview(hello)) != len(hello) or not hello.startswith(MAGIC):
        raise ConnectionError("not a data-plane hello")
    name = ""
    if isinstance(sock, ssl.SSLSocket):
        der = sock.getpeercert(binary_form=True)
        if der:
            name = certificate_name(x509.load_der_x509_certificate(der))
    return bytes(hello[len(MAGIC) :]), name


# -- the server side --------------------------------------------------------------------------------


class PushTarget(Protocol):
    """What a push's bytes are written to (the parameter server's staging of one push).

    ``write`` may return an awaitable. A target in memory may also offer
    ``view(offset, length) -> memoryview | None`` (where those payload bytes belong) and
    ``landed(offset, length)`` (that many bytes were received into that view): bytes then go
    from the socket straight into place; and ``async writable(offset, end)``, awaited before
    bytes [offset, end) are received into their view (the place may still be in use).
    """

    @property
    def received(self) -> int: ...

    def write(self, offset: int, data: memoryview) -> Awaitable[None] | None: ...


class Connection:
    """An accepted data connection whose ticket was good; closed once, by its user."""

    def __init__(self, sock: socket.socket, plane: DataPlane) -> None:
        self.sock = sock
        self._plane = plane
        self.closed = False
        plane.connections.add(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.close()
            self._plane.connections.discard(self)
            self._plane._closed_one()


class Ticket:
    """One offer waiting for its data connection."""

    def __init__(self, plane: DataPlane, token: bytes, identity: str, expires: float) -> None:
        self.plane = plane
        self.token = token
        self.identity = identity
        self.expires = expires
        self.future: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self.claimed = False  # a connection presented it; the future is set once ACCEPTED is out
        self._taken = False

    @property
    def offer(self) -> Offer:
        return Offer(self.plane.port, self.token, self.plane.cert_sha256)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.offer.metadata()

    async def connection(self, *also: asyncio.Future[Any]) -> Connection | None:
        """The data connection once it presented this ticket; None when the ticket expired first,
        or when one of ``also`` finished first (the ticket is then void)."""
        remaining = self.expires - self.plane.clock()
        if remaining > 0 and not self.future.done():
            await asyncio.wait({self.future, *also}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if self.claimed and not self.future.done():
            # NOTE: the connection came and is being told ACCEPTED. The client may be done already
            # (its bytes sent, its call half-closed) before that send completes here: the
            # connection is still this ticket's, and holds those bytes.
            await asyncio.wait({self.future})
        if self.future.done() and not self.future.cancelled():
            self._taken = True
            return self.future.result()
        self.withdraw()
        return None

    def withdraw(self) -> None:
        """Void the ticket (a connection presenting it later is closed, one nobody took too)."""
        if self.plane.tickets.get(self.token) is self:
            del self.plane.tickets[self.token]
        if not self.future.done():
            self.future.cancel()
        elif not self.future.cancelled() and not self._taken:
            self.future.result().close()


class DataPlane:
    """A data port beside a gRPC server: offers tickets, accepts and checks data connections."""

    def __init__(
        self,
        listen: str,
        *,
        tls: TlsMaterial | None = None,
        config_key: str = "",
        max_connections: int = MAX_CONNECTIONS,
        max_tickets: int = MAX_TICKETS,
        ticket_seconds: float = TICKET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        streams: int = 8,
    ) -> None:
        """``streams``: the most connections one transfer gets (``paramserver.data_streams``)."""
        self.listen = listen
        self.streams = max(1, min(streams, MAX_STREAMS))
        self.config_key = config_key
        self.tls = tls
        self._context = tls.ssl_context(server=True) if tls is not None else None
        self.cert_sha256 = tls.certificate_sha256() if tls is not None else ""
        self.max_connections = max_connections
        self.max_tickets = max_tickets
        self.ticket_seconds = ticket_seconds
        self.clock = clock
        self.tickets: dict[bytes, Ticket] = {}
        self.connections: set[Connection] = set()
        self.open_connections = 0
        self.transfers = collections.Counter[str]()  # "received" / "sent": payloads moved over a data connection
        self.port = 0
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        # Handshakes and transfers: one thread per open connection at most.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="dataplane")

    async def start(self) -> None:
        """Bind and accept; raises PortInUseError naming the config key when the port is taken."""
        host, port = split_address(self.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server((host, port), family=family, backlog=self.max_connections)
        except OSError as exc:
            raise PortInUseError(self.listen, self.config_key) from exc
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        # NOTE: it waits for connections (watched for death only: a data port that stopped
        # accepting would quietly move every transfer into the calls).
        self._accepting = liveness.supervised(self._accept_loop(), name="dataplane-accept")
        log.info("dataplane.started", address=self.address, tls=self.tls is not None)

    @property
    def address(self) -> str:
        host = self.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
        for ticket in list(self.tickets.values()):
            ticket.withdraw()
        for conn in list(self.connections):  # wakes the threads blocked on them
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def offer(self, identity: str) -> Ticket | None:
        """A ticket for one transfer by ``identity`` (the CN of the caller's certificate under mTLS,
        else ""); None when too many are outstanding (the call then carries the bytes)."""
        if self._listener is None:
            return None
        now = self.clock()
        for token, ticket in list(self.tickets.items()):
            if ticket.expires < now:
                del self.tickets[token]
                ticket.withdraw()
        if len(self.tickets) >= self.max_tickets:
            log.warning("dataplane.tickets_full", outstanding=len(self.tickets))
            return None
        ticket = Ticket(self, secrets.token_bytes(TICKET_BYTES), identity, now + self.ticket_seconds)
        self.tickets[ticket.token] = ticket
        return ticket

    def offer_many(self, identity: str, count: int) -> list[Ticket]:
        """Tickets for one ranged transfer of up to ``count`` connections (fewer when the plane is
        short of them; empty when it has none).

        # NOTE: no more than the connections still free (open ones and tickets outstanding
        # counted): a connection past MAX_CONNECTIONS is closed at accept, and a client whose
        # connections are all refused stops asking this host for its data port for a while.
        """
        free = self.max_connections - self.open_connections - len(self.tickets)
        tickets: list[Ticket] = []
        for _ in range(max(1, min(count, free))):
            ticket = self.offer(identity)
            if ticket is None:
                break
            tickets.append(ticket)
        return tickets

    # -- accepting --

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            try:
                sock, peer = await loop.sock_accept(self._listener)
            except OSError as exc:  # out of file descriptors, say: wait, then go on
                log.warning("dataplane.accept_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            if self.open_connections >= self.max_connections:
                sock.close()
                log.warning("dataplane.too_many_connections", peer=str(peer), limit=self.max_connections)
                continue
            self.open_connections += 1
            future = loop.run_in_executor(self._pool, self._handshake, sock)
            future.add_done_callback(lambda done, sock=sock, peer=peer: self._handshaken(done, sock, peer))

    def _handshake(self, raw: socket.socket) -> tuple[socket.socket, bytes, str] | None:
        """(socket, ticket, certificate CN) of a new connection; None (closed) when it is not one of ours."""
        sock = raw
        try:
            raw.setblocking(True)
            raw.settimeout(HANDSHAKE_SECONDS)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(raw, server_side=True)
            ticket, name = _hello(sock)
            sock.settimeout(IDLE_SECONDS)
            return sock, ticket, name
        except (OSError, ValueError):
            for s in {sock, raw}:
                with contextlib.suppress(OSError):
                    s.close()
            return None

    def _handshaken(
        self, done: asyncio.Future[tuple[socket.socket, bytes, str] | None], raw: socket.socket, peer: Any
    ) -> None:
        result = None if done.cancelled() or done.exception() else done.result()
        if result is None:
            with contextlib.suppress(OSError):
                raw.close()  # (closed already, unless the handshake never ran: the plane stopped)
            self._closed_one()
            return
        sock, token, name = result
        ticket = self.tickets.get(token)
        why = ""
        if ticket is None:
            why = "unknown or used ticket"
        elif ticket.expires < self.clock():
            why = "expired ticket"
            ticket.withdraw()
        elif ticket.future.done():
            why = "ticket withdrawn"
        elif ticket.identity and ticket.identity != name:
            why = f"certificate {name!r} is not the caller's {ticket.identity!r}"
        if why or ticket is None:
            with contextlib.suppress(OSError):
                sock.close()
            self._closed_one()
            log.warning("dataplane.refused", peer=str(peer), why=why)
            return
        del self.tickets[token]
        ticket.claimed = True
        conn = Connection(sock, self)

        def accepted(sent: asyncio.Future[None]) -> None:
            # NOTE: the ticket's user gets the connection only once ACCEPTED is out, so no byte of
            # a transfer can overtake it.
            if sent.cancelled() or sent.exception() is not None or ticket.future.done():
                conn.close()
                if not ticket.future.done():
                    ticket.future.cancel()
            else:
                ticket.future.set_result(conn)

        asyncio.get_running_loop().run_in_executor(self._pool, sock.sendall, ACCEPTED).add_done_callback(accepted)

    def _closed_one(self) -> None:
        self.open_connections -= 1

    # -- transfers --

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def receive(self, conn: Connection, target: PushTarget, total: int) -> bool:
        """Receive a push's bytes from ``target.received`` up to ``total``; False when the connection
        ended before (the target holds what arrived)."""
        self.transfers["received"] += 1
        view_of = getattr(target, "view", None)
        begin, started = target.received, time.perf_counter()
        try:
            return await self._receive(conn, target, total, view_of)
        finally:
            _log_transfer(
                "dataplane.received", target.received - begin, started, total=total, complete=target.received == total
            )

    async def _receive(self, conn: Connection, target: PushTarget, total: int, view_of: Any) -> bool:
        writable = getattr(target, "writable", None)
        while (start := target.received) < total:
            length = min(PIECE_BYTES, total - start)
            view = view_of(start, length) if view_of is not None else None
            if view is not None and not view.nbytes:
                view = None
            if view is None:
                length = min(SCRATCH_BYTES, length)
            else:
                view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
                length = len(view)  # (a target may hand out less than asked)
            if view is not None:
                if writable is not None:
                    await writable(start, start + length)
                got = await self._run(recv_exactly, conn.sock, view)
                if got:
                    target.landed(start, got)  # type: ignore[attr-defined]
            else:
                # NOTE: a fresh buffer per piece (not zeroed, and reused by malloc): a target may
                # keep referring to what it was given until it has hashed it.
                scratch = memoryview(np.empty(length, dtype=np.uint8))
                got = await self._run(recv_exactly, conn.sock, scratch)
                if got:
                    written = target.write(start, scratch[:got])
                    if inspect.isawaitable(written):
                        await written
            if got < length:
                return False
        return True

    async def send_view(
        self,
        conn: Connection,
        view: memoryview,
        offset: int,
        *,
        ready: Callable[[int], Awaitable[Any]] | None = None,
        mapping: mmap.mmap | None = None,
    ) -> None:
        """Send bytes [offset, len(view)) of a payload (in memory, or a ``mapping`` of its file),
        each piece once ``ready(end)`` returned; raises OSError when the connection breaks."""
        self.transfers["sent"] += 1
        started = time.perf_counter()
        if ready is None:
            await self._run(functools.partial(send_range, conn.sock, view, offset, len(view), mapping=mapping))
        else:
            for start in range(offset, len(view), PIECE_BYTES):
                end = min(len(view), start + PIECE_BYTES)
                await ready(end)
                await self._run(conn.sock.sendall, view[start:end])
        _log_transfer("dataplane.sent", len(view) - offset, started, total=len(view))

    async def receive_push(
        self, ticket: Ticket, target: PushTarget, total: int, requests: AsyncIterator[Any]
    ) -> tuple[AsyncIterator[Any], bool]:
        """A push offered ``ticket``: its bytes over the data connection when the client comes.

        Returns what is left of the call's messages (nothing when the client used the data
        connection: it then ends its messages; its chunks when it sends them in the call
        instead, having failed to connect), and whether a data connection ended before the
        last byte.
        """
        pending = asyncio.ensure_future(anext(requests, None))
        cut = False
        try:
            conn = await ticket.connection(pending)
            if conn is not None:
                try:
                    cut = not await self.receive(conn, target, total)
                finally:
                    conn.close()
            first = await pending
        finally:
            ticket.withdraw()
            pending.cancel()
        return _chain(first, requests), cut

    async def receive_ranges(self, conn: Connection, target: RangeTarget, total: int) -> bool:
        """Receive the ranges a ranged connection carries into ``target`` until the client ends the
        connection; False when it broke off inside a range (or sent a bad range)."""
        held = target.held
        writable = getattr(target, "writable", None)
        moved, started = 0, time.perf_counter()
        try:
            while True:
                head = bytearray(RANGE.size)
                got = await self._run(recv_exactly, conn.sock, memoryview(head))
                if got == 0:
                    return True  # the client is done with this connection
                if got < RANGE.size:
                    return False
                a, b = RANGE.unpack(head)
                if not 0 <= a < b <= total:
                    log.warning("dataplane.bad_range", start=a, end=b, total=total)
                    return False
                at = claim = held.resume(a, b, target.received)
                if not held.claim(claim, b):
                    log.warning("dataplane.overlapping_range", start=a, end=b)
                    return False
                try:
                    await self._run(conn.sock.sendall, RESUME.pack(at))
                    while at < b:
                        view = target.range_view(at, min(PIECE_BYTES, b - at))
                        if view is None:
                            return False  # the push was dropped meanwhile
                        if writable is not None:
                            await writable(at, at + len(view))
                        got = await self._run(recv_exactly, conn.sock, view)
                        if got:
                            held.add(at, at + got)
                            prefix = held.advance(target.received)
                            if prefix > target.received:
                                target.landed(target.received, prefix - target.received)
                            at += got
                            moved += got
                        if got < len(view):
                            return False
                except OSError:
                    return False
                finally:
                    held.release(claim, b)
        finally:
            _log_transfer("dataplane.received", moved, started, total=total, ranged=True)

    async def receive_push_ranged(
        self, tickets: list[Ticket], target: RangeTarget, total: int, requests: AsyncIterator[Any]
    ) -> tuple[AsyncIterator[Any], bool]:
        """:meth:`receive_push` over the connections of several tickets, each carrying ranges."""
        self.transfers["received"] += 1
        pending = asyncio.ensure_future(anext(requests, None))
        used, begin, started = 0, target.received, time.perf_counter()

        async def one(ticket: Ticket) -> bool:
            nonlocal used
            conn = await ticket.connection(pending)
            if conn is None:
                return True
            used += 1
            try:
                return await self.receive_ranges(conn, target, total)
            finally:
                conn.close()

        try:
            done = await asyncio.gather(*(one(t) for t in tickets))
            first = await pending
        finally:
            for ticket in tickets:
                ticket.withdraw()
            pending.cancel()
            _log_transfer(
                "dataplane.received_ranges",
                target.received - begin,
                started,
                total=total,
                streams=used,
                offered=len(tickets),
                complete=target.received == total,
            )
        return _chain(first, requests), not all(done) and target.received < total

    async def send_ranges(
        self,
        conn: Connection,
        view: memoryview,
        *,
        ready: Callable[[int], Awaitable[Any]] | None = None,
        mapping: mmap.mmap | None = None,
    ) -> None:
        """Serve the ranges a ranged connection asks for until the client ends it; raises OSError
        when the connection breaks, ValueError on a bad range."""
        total = len(view)
        moved, started = 0, time.perf_counter()
        try:
            while True:
                head = bytearray(RANGE.size)
                got = await self._run(recv_exactly, conn.sock, memoryview(head))
                if got == 0:
                    return
                a, b = RANGE.unpack(head) if got == RANGE.size else (0, 0)
                if not 0 <= a < b <= total:
                    raise ValueError(f"bad range [{a}, {b}) of a payload of {total} bytes")
                await self._run(conn.sock.sendall, RESUME.pack(a))
                if ready is None:
                    await self._run(functools.partial(send_range, conn.sock, view, a, b, mapping=mapping))
                else:
                    for start in range(a, b, PIECE_BYTES):
                        end = min(b, start + PIECE_BYTES)
                        await ready(end)
                        await self._run(conn.sock.sendall, view[start:end])
                moved += b - a
        finally:
            _log_transfer("dataplane.sent", moved, started, total=total, ranged=True)


class RangeTarget(Protocol):
    """A push target that takes ranges in any order (the parameter server's staging of one push):
    ``held`` keeps what arrived beyond ``received`` (across calls, for resumes), ``range_view``
    is where payload bytes [offset, offset+length) belong (None once the push is dropped),
    ``landed(received, n)`` extends the contiguous prefix (counted and hashed there)."""

    held: Held

    @property
    def received(self) -> int: ...

    def range_view(self, offset: int, length: int) -> memoryview | None: ...

    def landed(self, offset: int, length: int) -> None: ...


def _log_transfer(event: str, moved: int, started: float, **fields: Any) -> None:
    seconds = time.perf_counter() - started
    log.info(
        event,
        bytes=moved,
        seconds=round(seconds, 4),
        gbps=round(moved / seconds / 1e9, 3) if seconds else 0.0,
        **fields,
    )


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is None:
        return
    yield first
    async for item in rest:
        yield item


# -- the client side --------------------------------------------------------------------------------


class RangeQueue:
    """The ranges a ranged transfer still has to move, taken by its connections' threads.

    A range whose connection broke goes back (:meth:`put_back`) for another connection to take
    (a push's receiver answers where in it the bytes go on; a pull asks for what is missing),
    at most :data:`RANGE_RETRIES` times each.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._lock = threading.Lock()
        self._ranges = collections.deque(ranges)
        self._returns = collections.Counter[tuple[int, int]]()

    def __len__(self) -> int:
        return len(self._ranges)

    def take(self) -> tuple[int, int] | None:
        with self._lock:
            return self._ranges.popleft() if self._ranges else None

    def put_back(self, key: tuple[int, int], rest: tuple[int, int]) -> None:
        """``rest`` of the range ``key`` is still to move."""
        with self._lock:
            self._returns[key] += 1
            if self._returns[key] <= RANGE_RETRIES and rest[1] > rest[0]:
                self._ranges.append(rest)
                self._returns[rest] = self._returns[key]


RANGE_RETRIES = 3


def push_ranges(
    sock: socket.socket,
    view: memoryview,
    queue: RangeQueue,
    *,
    mapping: mmap.mmap | None = None,
    sent: Callable[[int], None] | None = None,
) -> None:
    """Send ranges of ``view`` taken from ``queue`` over a ranged connection until none is left
    (blocking; raises OSError when the connection breaks, the broken range put back)."""
    while (taken := queue.take()) is not None:
        a, b = taken
        try:
            sock.sendall(RANGE.pack(a, b))
            answer = bytearray(RESUME.size)
            if recv_exactly(sock, memoryview(answer)) != RESUME.size:
                raise ConnectionError("the data connection ended before the range was answered")
            (at,) = RESUME.unpack(answer)
            if not a <= at <= b:
                raise ConnectionError(f"the server answered {at} for the range [{a}, {b})")
            last = at

            def moved(upto: int) -> None:
                nonlocal last
                if sent is not None:
                    sent(upto - last)
                last = upto

            send_range(sock, view, at, b, mapping=mapping, sent=moved)
        except OSError:
            queue.put_back(taken, taken)
            raise


def pull_ranges(
    sock: socket.socket,
    queue: RangeQueue,
    place: Callable[[int, int], memoryview],
    landed: Callable[[int, int], None],
) -> int:
    """Receive ranges taken from ``queue`` over a ranged connection into ``place(offset, length)``,
    reporting ``landed(offset, n)``, until none is left (blocking). Returns the bytes received;
    raises OSError when the connection breaks (the rest of the range put back)."""
    got_total = 0
    while (taken := queue.take()) is not None:
        a, b = taken
        at = a
        try:
            sock.sendall(RANGE.pack(a, b))
            answer = bytearray(RESUME.size)
            if recv_exactly(sock, memoryview(answer)) != RESUME.size or RESUME.unpack(answer)[0] != a:
                raise ConnectionError("the server did not serve the range asked for")
            while at < b:
                view = place(at, min(PIECE_BYTES, b - at))
                got = recv_exactly(sock, view)
                if got:
                    landed(at, got)
                    at += got
                    got_total += got
                if got < len(view):
                    raise ConnectionError(f"the data connection ended inside the range [{a}, {b})")
        except OSError:
            queue.put_back(taken, (at, b))
            raise
    return got_total


class Refused(ConnectionError):
    """The data port could not be used (not reached, the ticket or a certificate refused)."""


def connect(host: str, offer: Offer, tls: TlsMaterial | None) -> socket.socket:
    """A data connection to ``host`` on the offer's port, ticket accepted (blocking; raises Refused)."""
    if offer.cert_sha256 and tls is None:
        raise Refused("the data port speaks TLS but this process has no [tls] certificate")
    try:
        sock = socket.create_connection((host, offer.port), timeout=HANDSHAKE_SECONDS)
    except OSError as exc:
        raise Refused(f"cannot connect to {host}:{offer.port}: {exc}") from exc
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if offer.cert_sha256:
            assert tls is not None
            sock = tls.ssl_context(server=False).wrap_socket(sock)
            der = sock.getpeercert(binary_form=True) or b""
            if hashlib.sha256(der).hexdigest() != offer.cert_sha256:
                raise Refused("the data port's certificate is not the one the call named")
        sock.sendall(MAGIC + offer.ticket)
        answer = bytearray(1)
        if recv_exactly(sock, memoryview(answer)) != 1 or bytes(answer) != ACCEPTED:
            raise Refused("the data port refused the ticket")
        sock.settimeout(IDLE_SECONDS)
        return sock
    except BaseException as exc:
        with contextlib.suppress(OSError):
            sock.close()
        if isinstance(exc, OSError) and not isinstance(exc, Refused):
            raise Refused(f"the data connection to {host}:{offer.port} failed: {exc}") from exc
        raise
