"""Parallel streams on the data plane: ranges split, land in any order, resume one by one, and
the payload's one digest is still checked; the connection count is chosen by measurement."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tendril.core import dataplane, tensorstream
from tendril.core.dataplane import DataPlane, Held, Offer, RangeQueue
from tendril.core.streaming import BufferDestination, Receiver, StreamError
from tendril.paramserver.servicer import receive_push
from tests.unit.test_dataplane import _Context, _ends_after, _Freed, _payload

MIB = 1024 * 1024


@pytest.fixture
async def plane() -> AsyncIterator[DataPlane]:
    plane = DataPlane("127.0.0.1:0", streams=4)
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


def test_ranges_cover_the_payload_on_chunk_boundaries() -> None:
    ranges = dataplane.split_ranges(0, 10 * MIB + 5, 4, MIB)
    assert ranges == [(0, 3 * MIB), (3 * MIB, 6 * MIB), (6 * MIB, 9 * MIB), (9 * MIB, 10 * MIB + 5)]
    resumed = dataplane.split_ranges(MIB + 7, 5 * MIB, 2, MIB)
    assert resumed[0][0] == MIB + 7 and resumed[-1][1] == 5 * MIB
    assert all(a % MIB == 0 for a, _ in resumed[1:])
    assert dataplane.split_ranges(0, 100, 8, MIB) == [(0, 100)]  # smaller than a chunk: one range
    assert dataplane.split_ranges(5, 5, 4, MIB) == []


def test_held_ranges_extend_the_prefix_only_when_contiguous() -> None:
    held = Held()
    held.add(20, 30)
    held.add(40, 50)
    assert held.advance(10) == 10  # a hole at [10, 20)
    assert held.resume(20, 40, 10) == 30  # [20, 30) is held: the range goes on at 30
    assert held.resume(0, 20, 10) == 10  # below the prefix nothing is sent again
    held.add(10, 20)
    assert held.advance(10) == 30 and held.spans == [(40, 50)]
    held.add(30, 40)
    assert held.advance(30) == 50 and not held.spans
    assert held.claim(0, 10) and not held.claim(5, 15) and held.claim(10, 20)
    held.release(0, 10)
    assert held.claim(0, 5)


def test_the_range_queue_puts_a_broken_range_back_a_bounded_number_of_times() -> None:
    queue = RangeQueue([(0, 10)])
    for _ in range(dataplane.RANGE_RETRIES):
        taken = queue.take()
        assert taken is not None
        queue.put_back(taken, (taken[0] + 1, 10))
    assert queue.take() is not None
    assert queue.take() is None


def test_the_count_doubles_while_it_pays_and_stops_under_ten_percent() -> None:
    chooser = tensorstream.StreamChooser(cap=8, loopback=True)
    big = 64 * MIB
    assert chooser.streams("ps", "push", big) == 1
    chooser.measured("ps", "push", 1, big, 4.0)  # 16 MiB/s
    assert chooser.streams("ps", "push", big) == 2
    chooser.measured("ps", "push", 2, big, 2.0)  # 2x: go on
    assert chooser.streams("ps", "push", big) == 4
    chooser.measured("ps", "push", 4, big, 1.9)  # +5 %: keep 2
    assert chooser.streams("ps", "push", big) == 2 and chooser.choices["ps", "push"].settled
    assert chooser.streams("ps", "push", 5 * MIB) == 1  # a small payload: one connection per 4 MiB
    assert chooser.streams("ps", "pull", big) == 1  # each direction and host on its own
    chooser.measured("ps", "push", 2, MIB, 100.0)  # too small to count
    assert chooser.streams("ps", "push", big) == 2
    chooser.measured("ps", "push", 2, big, 5.0)  # under half of what it measured: probe again
    assert chooser.streams("ps", "push", big) == 1


def test_a_loopback_host_gets_one_connection() -> None:
    chooser = tensorstream.StreamChooser(cap=8)
    for host in ("127.0.0.1", "::1", "localhost"):
        chooser.measured(host, "push", 1, 64 * MIB, 4.0)
        assert chooser.streams(host, "push", 64 * MIB) == 1
    chooser.measured("198.18.0.4", "push", 1, 64 * MIB, 4.0)
    assert chooser.streams("198.18.0.4", "push", 64 * MIB) == 2


def test_the_cap_bounds_the_count_and_one_turns_it_off() -> None:
    chooser = tensorstream.StreamChooser(cap=2, loopback=True)
    chooser.measured("ps", "pull", 1, 64 * MIB, 4.0)
    chooser.measured("ps", "pull", 2, 64 * MIB, 1.0)
    assert chooser.streams("ps", "pull", 64 * MIB) == 2 and chooser.choices["ps", "pull"].settled
    off = tensorstream.StreamChooser(cap=1, loopback=True)
    off.measured("ps", "pull", 1, 64 * MIB, 4.0)
    assert off.streams("ps", "pull", 64 * MIB) == 1


class _Target(Receiver):
    """A push target in memory that takes ranges (what the parameter server's spool offers)."""

    def __init__(self, info: Any, buffer: bytearray) -> None:
        super().__init__(info, BufferDestination(memoryview(buffer)))
        self.held = Held()

    def range_view(self, offset: int, length: int) -> memoryview | None:
        return self.dest.view(offset, length)  # type: ignore[attr-defined]


async def _push_ranged(
    plane: DataPlane, target: _Target, payload: bytes, ranges: list[tuple[int, int]], *, cut_after: int = 0
) -> bool:
    """One push call over three ranged connections; with ``cut_after`` the first connection
    breaks off that many bytes into its range."""
    context = _Context(ask=True)
    context.metadata = dataplane.request(3)

    async def client() -> None:
        await context.offered.wait()
        offer = Offer.from_metadata(context.sent)
        assert offer is not None and len(offer.tickets) == 3
        queue = RangeQueue(ranges)

        def cut(sock: socket.socket) -> None:
            taken = queue.take()
            assert taken is not None
            a, b = taken
            sock.sendall(dataplane.RANGE.pack(a, b))
            answer = bytearray(dataplane.RESUME.size)
            dataplane.recv_exactly(sock, memoryview(answer))
            (at,) = dataplane.RESUME.unpack(answer)
            sock.sendall(payload[at : at + cut_after])

        def one(ticket: bytes, first: bool) -> None:
            with dataplane.connect("127.0.0.1", offer.one(ticket), None) as sock:
                if first and cut_after:
                    cut(sock)
                    return
                dataplane.push_ranges(sock, memoryview(payload), queue)

        await asyncio.to_thread(one, offer.tickets[0], True)  # the first one takes the first range
        await asyncio.gather(*(asyncio.to_thread(one, t, False) for t in offer.tickets[1:]))

    sending = asyncio.ensure_future(client())
    try:
        return await asyncio.wait_for(
            receive_push(plane, context, target.info, target, _ends_after(sending)),  # type: ignore[arg-type]
            30,
        )
    finally:
        await sending


async def test_ranges_land_in_any_order_and_the_digest_is_checked_once(plane: DataPlane) -> None:
    payload, info = _payload(5 * MIB + 321)
    buffer = bytearray(info.total_bytes)
    target = _Target(info, buffer)
    ranges = dataplane.split_ranges(0, len(payload), 4, MIB)[::-1]  # the last range first
    cut = await _push_ranged(plane, target, payload, ranges)
    await target.settle()
    target.verify()
    assert not cut and bytes(buffer) == payload and target.received == len(payload)
    assert not target.held.spans and not target.held.claims


async def test_ranges_land_only_where_the_target_says_they_may(plane: DataPlane) -> None:
    payload, info = _payload(5 * MIB + 321)
    buffer = bytearray(info.total_bytes)
    target = _Target(info, buffer)
    freed = _Freed()
    target.writable = freed.writable  # type: ignore[attr-defined]
    early = []

    async def free_by_pieces() -> None:
        for upto in range(0, len(payload) + MIB, MIB):
            for _ in range(4):
                await asyncio.sleep(0.005)
                # (on the loop, as the frees are: nothing may have been written past them)
                if any(buffer[freed.upto :]):
                    early.append(freed.upto)
            freed.free(min(upto, len(payload)))

    freeing = asyncio.ensure_future(free_by_pieces())
    try:
        cut = await _push_ranged(plane, target, payload, dataplane.split_ranges(0, len(payload), 4, MIB))
    finally:
        await freeing
    await target.settle()
    target.verify()
    assert not cut and bytes(buffer) == payload and not early
    assert max(end for _, end in freed.asked) == len(payload)


async def test_a_range_that_broke_off_resumes_where_it_stopped(plane: DataPlane) -> None:
    payload, info = _payload(6 * MIB + 5)
    buffer = bytearray(info.total_bytes)
    target = _Target(info, buffer)
    ranges = dataplane.split_ranges(0, len(payload), 3, MIB)
    cut = await _push_ranged(plane, target, payload, ranges, cut_after=MIB + 3)
    assert cut and target.received == MIB + 3  # the prefix: the broken range's bytes so far
    assert target.held.spans == [(ranges[1][0], len(payload))]  # the other ranges arrived whole
    # The retry sends every range; the server answers where each goes on, so little is sent again.
    sent: list[int] = []
    real = dataplane.send_range

    def counting(sock: Any, view: memoryview, start: int, end: int, **kw: Any) -> None:
        sent.append(end - start)
        real(sock, view, start, end, **kw)

    dataplane.send_range = counting  # type: ignore[assignment]
    try:
        again = await _push_ranged(plane, target, payload, ranges)
    finally:
        dataplane.send_range = real  # type: ignore[assignment]
    await target.settle()
    target.verify()
    assert not again and bytes(buffer) == payload
    assert sum(sent) == ranges[0][1] - (MIB + 3)


async def test_a_damaged_range_fails_the_payload_digest(plane: DataPlane) -> None:
    payload, info = _payload(4 * MIB + 9)
    damaged = bytearray(payload)
    damaged[3 * MIB + 17] ^= 0xFF  # inside the third range
    buffer = bytearray(info.total_bytes)
    target = _Target(info, buffer)
    cut = await _push_ranged(plane, target, bytes(damaged), dataplane.split_ranges(0, len(payload), 3, MIB))
    await target.settle()
    assert not cut and target.complete
    with pytest.raises(StreamError, match="damaged"):
        target.verify()


async def test_a_ranged_offer_takes_only_the_connections_still_free() -> None:
    small = DataPlane("127.0.0.1:0", max_connections=3, streams=8)
    await small.start()
    try:
        assert len(small.offer_many("", 8)) == 3  # the port's connections bound the offer
        assert len(small.offer_many("", 8)) == 1  # none free: one ticket, as a single transfer gets
    finally:
        await small.stop()
