"""tests.procs' port picker: ports no other pick got, from outside the kernel's ephemeral range."""

from __future__ import annotations

import socket

from tests.procs import _PortPicker, free_port, free_ports


def test_picks_never_repeat_and_stay_below_the_ephemeral_range() -> None:
    low = _PortPicker._ephemeral_low()
    first = free_ports(40)
    second = free_ports(40) + [free_port() for _ in range(20)]
    assert len(set(first)) == 40 and len(set(second)) == 60
    assert not set(first) & set(second)
    assert all(1024 <= p < low for p in first + second)


def test_a_port_someone_else_holds_is_skipped() -> None:
    picker = _PortPicker()
    nxt = picker._ports[picker._cursor]
    with socket.socket() as held:
        held.bind(("127.0.0.1", nxt))
        held.listen()
        (port,) = picker.take(1)
    assert port != nxt


def test_a_used_up_range_starts_over_with_ports_that_are_free() -> None:
    picker = _PortPicker()
    picker._ports = range(picker._ports.start, picker._ports.start + 3)
    picker._cursor = 0
    assert sorted(picker.take(3)) == list(picker._ports)
    again = picker.take(2)
    assert len(set(again)) == 2 and set(again) <= set(picker._ports)
