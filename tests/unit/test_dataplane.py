"""The data plane on its own: tickets are single use, expire, and bind nothing else; everything is bounded."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator

import pytest

from tendril.core import dataplane
from tendril.core.dataplane import DataPlane, Offer, Refused


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
