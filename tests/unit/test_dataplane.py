"""The data plane on its own: tickets are single use, expire, and bind nothing else; everything is bounded."""

from __future__ import annotations

import asyncio
import secrets
import socket
import types
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from tendril.core import dataplane, streaming, tensorfile
from tendril.core.dataplane import DataPlane, Offer, Refused
from tendril.core.streaming import (
    DEFAULT_DIGEST,
    BufferDestination,
    Digest,
    Receiver,
    StreamInfo,
    info_from_header,
    parse_frame,
)
from tendril.paramserver.servicer import ParameterServerServicer, receive_push


@pytest.fixture
async def plane() -> AsyncIterator[DataPlane]:
    plane = DataPlane("127.0.0.1:0", max_connections=3)
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


async def _connect(offer: Offer) -> socket.socket:
    return await asyncio.to_thread(dataplane.connect, "127.0.0.1", offer, None)


def _closed_by_server(port: int, send: bytes = b"") -> bool:
    """Connect, send ``send``, and see the server close the connection (blocking)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(send)
        sock.settimeout(10)
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True


async def _settled(plane: DataPlane, open_connections: int) -> None:
    for _ in range(200):
        if plane.open_connections == open_connections:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{plane.open_connections} data connections open, expected {open_connections}")


async def test_a_ticket_is_good_once(plane: DataPlane) -> None:
    ticket = plane.offer("")
    assert ticket is not None and Offer.from_metadata(ticket.metadata()) == ticket.offer
    sock = await _connect(ticket.offer)
    conn = await ticket.connection()
    assert conn is not None
    conn.close()
    sock.close()
    with pytest.raises(Refused, match="refused the ticket"):  # replayed
        await _connect(ticket.offer)
    await _settled(plane, 0)
    assert not plane.tickets


async def test_a_wrong_ticket_is_closed_and_leaves_the_real_one_alone(plane: DataPlane) -> None:
    ticket = plane.offer("")
    assert ticket is not None
    with pytest.raises(Refused, match="refused the ticket"):
        await _connect(Offer(plane.port, secrets.token_bytes(dataplane.TICKET_BYTES)))
    # Not a data-plane hello at all: closed too.
    assert await asyncio.to_thread(_closed_by_server, plane.port, b"GET / HTTP/1.1\r\n\r\n" + b"x" * 40)
    sock = await _connect(ticket.offer)  # the real ticket still works
    conn = await ticket.connection()
    assert conn is not None
    conn.close()
    sock.close()
    await _settled(plane, 0)


async def test_an_expired_ticket_is_refused() -> None:
    plane = DataPlane("127.0.0.1:0", ticket_seconds=0.1)
    await plane.start()
    try:
        ticket = plane.offer("")
        assert ticket is not None
        assert await ticket.connection() is None  # nobody came in time: void
        with pytest.raises(Refused):
            await _connect(ticket.offer)
        late = plane.offer("")
        assert late is not None
        await asyncio.sleep(0.2)
        with pytest.raises(Refused):
            await _connect(late.offer)
        await _settled(plane, 0)
        assert not plane.tickets
    finally:
        await plane.stop()


async def test_connections_and_tickets_are_bounded(plane: DataPlane) -> None:
    idle = [socket.create_connection(("127.0.0.1", plane.port)) for _ in range(3)]  # say nothing
    try:
        await _settled(plane, 3)
        assert await asyncio.to_thread(_closed_by_server, plane.port)  # past the limit: closed at once
    finally:
        for sock in idle:
            sock.close()
    await _settled(plane, 0)
    small = DataPlane("127.0.0.1:0", max_tickets=2)
    await small.start()
    try:
        assert small.offer("") is not None and small.offer("") is not None
        assert small.offer("") is None  # no offer: the call carries the bytes
    finally:
        await small.stop()


async def test_a_silent_connection_is_cut_after_the_handshake_time(
    plane: DataPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataplane, "HANDSHAKE_SECONDS", 0.2)
    assert await asyncio.to_thread(_closed_by_server, plane.port)  # says nothing: closed by the server
    await _settled(plane, 0)


def test_offers_in_metadata() -> None:
    offer = Offer(50056, bytes(range(32)), "ab" * 32)
    assert Offer.from_metadata(offer.metadata()) == offer
    assert Offer.from_metadata([("tendril-stream", "accepted")]) is None
    assert Offer.from_metadata([(dataplane.PORT_KEY, "x"), (dataplane.TICKET_KEY, "00")]) is None
    assert Offer.from_metadata([(dataplane.PORT_KEY, "70000"), (dataplane.TICKET_KEY, "00" * 32)]) is None
    assert dataplane.requested(dataplane.REQUEST) and not dataplane.requested([])


async def test_the_host_a_channel_dials() -> None:
    import grpc

    for target, host in [
        ("127.0.0.1:5", "127.0.0.1"),
        ("ps.example:5", "ps.example"),
        ("[::1]:5", "::1"),
        ("dns:///ps.example:5", "ps.example"),
        ("unix:/tmp/s", None),
    ]:
        channel = grpc.aio.insecure_channel(target)
        try:
            assert dataplane.channel_host(channel) == host, target
        finally:
            await channel.close()


# -- the seam with the parameter server's core: targets with a view, served payloads in memory -------


class _Context:
    """What receive_push and the pull streams use of a grpc.aio ServicerContext."""

    def __init__(self, ask: bool) -> None:
        self.metadata = dataplane.REQUEST if ask else ()
        self.sent: tuple[tuple[str, str], ...] = ()
        self.offered = asyncio.Event()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    async def send_initial_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.sent = metadata
        self.offered.set()


def _payload(size: int = 3 * 1024 * 1024 + 123) -> tuple[bytes, StreamInfo]:
    layout, header = tensorfile.plan_layout([("w", ((size - 100) // 4,))], "fp32")
    payload = header + np.random.default_rng(1).integers(0, 256, layout.data_size, dtype=np.uint8).tobytes()
    digest = Digest(DEFAULT_DIGEST, new_digest(payload))
    return payload, StreamInfo("s", "run", 0, "w", 1.0, layout, digest)


def new_digest(data: bytes) -> str:
    hasher = streaming.new_hash(DEFAULT_DIGEST)
    hasher.update(data)
    return hasher.hexdigest()


async def _push_over_plane(plane: DataPlane, target: Receiver, payload: bytes) -> bool:
    """One push call whose client sends ``payload`` over the offered data connection; whether it was cut."""
    context = _Context(ask=True)

    async def client() -> None:
        await context.offered.wait()
        offer = Offer.from_metadata(context.sent)
        assert offer is not None

        def send() -> None:
            with dataplane.connect("127.0.0.1", offer, None) as sock:
                dataplane.send_range(sock, memoryview(payload), 0, len(payload))

        await asyncio.to_thread(send)

    sending = asyncio.ensure_future(client())
    try:
        return await receive_push(plane, context, target.info, target, _ends_after(sending))  # type: ignore[arg-type]
    finally:
        await sending


async def test_a_push_lands_straight_in_a_target_that_offers_a_view(
    plane: DataPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataplane, "PIECE_BYTES", 1024 * 1024)  # several pieces
    payload, info = _payload()
    buffer = bytearray(info.total_bytes)
    target = Receiver(info, BufferDestination(memoryview(buffer)))
    landed: list[tuple[int, int]] = []
    real_landed = target.landed

    def spy(offset: int, length: int) -> None:
        landed.append((offset, length))
        real_landed(offset, length)

    target.landed = spy  # type: ignore[method-assign]
    cut = await asyncio.wait_for(_push_over_plane(plane, target, payload), 30)
    await target.settle()
    target.verify()
    assert not cut and bytes(buffer) == payload
    assert [o for o, _ in landed] == sorted(o for o, _ in landed) and sum(n for _, n in landed) == len(payload)
    assert plane.transfers["received"] == 1


class _Freed:
    """A target's ``writable``: bytes [0, upto) may be written; ``upto`` grows as a test frees them."""

    def __init__(self) -> None:
        self.upto = 0
        self.asked: list[tuple[int, int]] = []
        self._changed = asyncio.Event()

    def free(self, upto: int) -> None:
        self.upto = upto
        self._changed.set()

    async def writable(self, offset: int, end: int) -> None:
        self.asked.append((offset, end))
        while end > self.upto:
            self._changed.clear()
            await self._changed.wait()


async def test_a_push_lands_in_a_target_view_only_once_the_target_says_it_may(
    plane: DataPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(the parameter server's buffer handed on from a push still being folded)"""
    monkeypatch.setattr(dataplane, "PIECE_BYTES", 1024 * 1024)
    payload, info = _payload()
    buffer = bytearray(info.total_bytes)
    target = Receiver(info, BufferDestination(memoryview(buffer)))
    freed = _Freed()
    real_landed = target.landed

    def landed(offset: int, length: int) -> None:
        assert offset + length <= freed.upto  # never before the place was free
        real_landed(offset, length)

    target.landed = landed  # type: ignore[method-assign]
    target.writable = freed.writable  # type: ignore[attr-defined]

    async def free_by_pieces() -> None:
        for upto in range(0, len(payload) + 512 * 1024, 512 * 1024):
            await asyncio.sleep(0.02)
            freed.free(min(upto, len(payload)))

    freeing = asyncio.ensure_future(free_by_pieces())
    try:
        cut = await asyncio.wait_for(_push_over_plane(plane, target, payload), 30)
    finally:
        await freeing
    await target.settle()
    target.verify()
    assert not cut and bytes(buffer) == payload
    assert freed.asked and freed.asked[-1][1] == len(payload)


async def _ends_after(done: asyncio.Future[None]) -> AsyncIterator[Any]:
    """A call with no more messages, half-closed once ``done`` (the client's bytes are through)."""
    await done
    for message in ():
        yield message


def _receive_all(offer: Offer, size: int) -> bytes:
    """What a pulling client gets over the data connection (blocking)."""
    buffer = bytearray(size)
    with dataplane.connect("127.0.0.1", offer, None) as sock:
        got = dataplane.recv_exactly(sock, memoryview(buffer))
    return bytes(buffer[:got])


@pytest.mark.parametrize("ask", [True, False])
async def test_a_payload_served_from_memory_is_sent_as_it_becomes_ready(
    plane: DataPlane, ask: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataplane, "PIECE_BYTES", 1024 * 1024)  # several pieces
    payload, info = _payload()
    ready_upto: list[int] = []

    async def ready(upto: int) -> None:
        ready_upto.append(upto)

    served = types.SimpleNamespace(
        view=memoryview(payload),
        ready=ready,
        path=None,
        layout=info.layout,
        digest=info.digest,
        round=3,
        contributors=2,
        weight=4.0,
    )
    servicer = ParameterServerServicer(None, plane)  # type: ignore[arg-type]
    context = _Context(ask=ask)
    frames: list[bytes] = []
    receiving: asyncio.Future[bytes] | None = None
    async for frame in servicer._stream(context, served, "run", 0, "run/update/3"):  # type: ignore[arg-type]
        frames.append(frame)
        if ask and receiving is None:  # the header came with the offer: connect, as a client does
            offer = Offer.from_metadata(context.sent)
            assert offer is not None
            receiving = asyncio.ensure_future(asyncio.to_thread(_receive_all, offer, len(payload)))
    header = parse_frame(frames[0])
    assert header.header is not None and header.contributors == 2
    got = info_from_header(header.header)
    assert got.digest == info.digest and got.round == 3
    if ask:
        assert receiving is not None and len(frames) == 1
        assert await receiving == payload and plane.transfers["sent"] == 1
    else:
        body = b"".join(bytes(parse_frame(f).data or b"") for f in frames[1:])
        assert body == payload and not plane.transfers
    assert len(ready_upto) >= 3 and ready_upto == sorted(ready_upto) and ready_upto[-1] == len(payload)
