"""tests.procs' port picker: ports no other pick got, from outside the kernel's ephemeral range."""

from __future__ import annotations

import itertools
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
    two = _PortPicker().take(2)
    picker = _PortPicker()
    picker._ports = range(min(two), max(two) + 1, max(two) - min(two))
    with socket.socket() as held:
        held.bind(("127.0.0.1", two[0]))
        held.listen()
        assert picker.take(1) == [two[1]]


def test_a_used_up_range_starts_over() -> None:
    picker = _PortPicker()
    (port,) = picker.take(1)
    picker._ports = range(port, port + 1)
    assert picker.take(1) == [port] and picker.take(1) == [port]


def test_ports_next_to_each_other_are_rare() -> None:
    """Tests shift a worker's ports by worker.port_offset: consecutive picks would collide."""
    ports = sorted(_PortPicker().take(100))
    assert sum(b - a <= 5 for a, b in itertools.pairwise(ports)) < 15  # in order: 99; at random: 2.5
