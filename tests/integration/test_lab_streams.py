"""Parallel streams across namespaces: a push and a pull over four connections through the lab's
shaped links and latency relay carry the same payload as one connection.

Needs root and iproute2/iptables. Elsewhere it skips with the reason; under CI (env CI set) it
fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tendril.lab.lab import Lab, LabSettings
from tendril.lab.net import namespaces_unavailable
from tendril.lab.streams import measure_streams

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def namespaces() -> None:
    why = namespaces_unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to build the lab's network namespaces: {why}")
        pytest.skip(f"the lab cannot create network namespaces here: {why}")


async def test_four_connections_carry_a_push_and_a_pull_across_a_shaped_link(tmp_path: Path) -> None:
    with Lab(tmp_path / "run", LabSettings(workers=2, rate_mbit=200, latency_ms=5, tls=False)) as lab:
        rows = await measure_streams(lab, mb=16, counts=(1, 4), auto=False)
        log = (tmp_path / "run" / "logs" / "streams-ps.log").read_text()
    assert [r["streams"] for r in rows] == [1, 4]
    for row in rows:
        assert row["mb"] == pytest.approx(16, rel=0.01)
        # 16 MB at 200 Mbit/s is 0.64 s: the pushes and pulls went through the shaped link.
        assert 0.5 < row["push_s"] < 30 and 0.5 < row["pull_s"] < 30
    assert '"ranged": true' in log  # the four-connection transfers went as ranges


async def test_the_relay_window_bounds_one_connection(tmp_path: Path) -> None:
    # 256 KiB held back per direction with 5 ms of delay: one connection carries at most
    # 256 KiB / 5 ms ≈ 420 Mbit/s of the 1 Gbit/s link.
    settings = LabSettings(workers=2, rate_mbit=1000, latency_ms=5, tls=False, relay_window_kib=256)
    with Lab(tmp_path / "run", settings) as lab:
        link = await lab.measure("worker-1", "worker-0")
    assert 50 < link["mbit_per_s"] < 600, link
