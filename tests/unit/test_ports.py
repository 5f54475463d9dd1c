"""tendril.core.ports: ports no other pick of the process got, from below the kernel's ephemeral
range; pick_offsets claims a worker's ports from the same picker."""

from __future__ import annotations

import itertools
import socket

import pytest

from tendril.core.ports import PICKER, PortPicker, ephemeral_range, free_address, free_port, free_ports
from tendril.scheduler import cluster
from tendril.scheduler.cluster import pick_offsets, worker_ports


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_picks_never_repeat_and_stay_below_the_ephemeral_range() -> None:
    low = ephemeral_range()[0]
    first = free_ports(40)
    second = free_ports(40) + [free_port() for _ in range(20)] + [_port(free_address()) for _ in range(20)]
    assert len(set(first)) == 40 and len(set(second)) == 80
    assert not set(first) & set(second)
    assert all(1024 <= p < low for p in first + second)


def test_a_port_someone_else_holds_is_skipped() -> None:
    two = PortPicker(PICKER.ports).take(2)
    picker = PortPicker(range(min(two), max(two) + 1, max(two) - min(two)))
    with socket.socket() as held:
        held.bind(("127.0.0.1", two[0]))
        held.listen()
        assert picker.take(1) == [two[1]]


def test_a_used_up_range_starts_over() -> None:
    (port,) = PortPicker(PICKER.ports).take(1)
    picker = PortPicker(range(port, port + 1))
    assert picker.take(1) == [port] and picker.take(1) == [port]


def test_without_a_range_below_the_ephemeral_one_the_kernel_picks() -> None:
    picker = PortPicker(range(0))
    picked = picker.take(3) + picker.take(3)
    assert len(set(picked)) == 6


def test_ports_next_to_each_other_are_rare() -> None:
    """Tests shift a worker's ports by worker.port_offset: consecutive picks would collide."""
    picked = sorted(PortPicker(PICKER.ports).take(100))
    assert sum(b - a <= 5 for a, b in itertools.pairwise(picked)) < 15  # in order: 99; at random: 2.5


def test_a_claim_with_a_port_already_handed_out_marks_nothing() -> None:
    picker = PortPicker(PICKER.ports)
    (given,) = picker.take(1)
    other = given + 1 if given + 1 in picker.ports else given - 1
    assert not picker.claim([other, given])
    assert picker.claim([other])  # ``other`` was left unmarked by the refused claim
    assert not picker.claim([other])


def test_worker_ports_of_picked_offsets_are_never_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """pick_offsets claims the ports a worker will bind later, its metrics port below the
    ephemeral range among them: free_port cannot give one to a server started before it."""
    picker = PortPicker(PICKER.ports)
    monkeypatch.setattr(cluster, "PICKER", picker)
    (offset,) = pick_offsets(1)
    addresses = worker_ports(offset)
    metrics = _port(addresses[-2])
    assert metrics in picker.ports and not picker.claim(_port(a) for a in addresses)
    assert pick_offsets(1) != [offset]
