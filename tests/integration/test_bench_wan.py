"""The bench's WAN section end to end on a tiny grid: one lab with two worker hosts (and a host
for the parameter server) trains one blocking int4 round at 100 Mbit/s, a second lab runs the
gloo data-parallel baseline over its worker hosts, and the figures come out with the mode, codec
and rate in their names (the figures' values are judged only by ``python -m bench --only wan``).

Needs root and iproute2, as tests/integration/test_lab.py: elsewhere it skips with the reason,
and with CI set it fails instead.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import wan
from tendril.lab.net import namespaces_unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def namespaces() -> None:
    why = namespaces_unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to build the lab's network namespaces: {why}")
        pytest.skip(f"the lab cannot create network namespaces here: {why}")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # NOTE: a job's bridge socket lies deep below the lab's folder; pytest's tmp_path is too long.
    with tempfile.TemporaryDirectory(prefix="wan-", dir="/tmp") as tmp:
        yield Path(tmp)


def test_a_tiny_wan_grid_measures_diloco_beside_data_parallel(short_tmp: Path) -> None:
    grid = wan.Grid(
        modes=("blocking",),
        codecs=("int4",),
        rates=(100.0,),
        sparse_modes=(),
        workers=2,
        rounds=1,
        inner_steps=2,
        repeats=1,  # (the section's default runs each configuration three times)
        width=0,  # the demo's model (64 wide): the smallest, so the test stays short
    )
    began = time.monotonic()
    figures = {f.name: f for f in wan.measure(short_tmp, grid)}
    print(f"wan smoke: {time.monotonic() - began:.1f} s")
    assert not [f for f in figures.values() if f.value is None], figures
    name = "WAN blocking int4 100 Mbit/s"
    baseline = "data-parallel (gloo all_reduce every step), 100 Mbit/s"
    util = figures[f"{name}: compute utilization"]
    assert 0.0 < util.value <= 1.0 and util.baseline_name == baseline  # type: ignore[operator]
    # The parameter server and the eval job ran on their own host, so every worker's push and
    # pull crossed its shaped link; the training jobs ran on the worker hosts.
    assert util.details["placement"] == {
        "eval": ["paramserver"],
        "parameter_server": ["paramserver"],
        "train": ["worker-0", "worker-1"],
    }
    assert 0.0 < util.baseline <= 1.0  # type: ignore[operator]
    loss = figures[f"{name}: held-out loss after 1 rounds"]
    assert math.isfinite(loss.value) and math.isfinite(loss.baseline)  # type: ignore[arg-type]
    # int4 pushes ~8x fewer bytes per step than fp32 and DiLoCo pushes once per round: the
    # baseline's all_reduce of every step's fp32 gradient sends more.
    sent = figures[f"{name}: bytes sent per worker per run"]
    assert 0 < sent.value < sent.baseline  # type: ignore[operator]
    ratio = figures[f"{name}: data-parallel bytes / these bytes"]
    assert ratio.value == pytest.approx(sent.baseline / sent.value, rel=0.01)  # type: ignore[operator]
    # The baseline's bytes are what its hosts sent on their links, and they are about what a
    # ring all_reduce of its gradients sends (gloo's own framing and TCP's headers on top).
    dp = figures["WAN data-parallel fp32 100 Mbit/s: bytes sent per worker per run"].details
    assert 0.9 * dp["ring_bytes_per_worker"] <= dp["bytes_up_per_worker"] <= 1.5 * dp["ring_bytes_per_worker"], dp
    assert dp["samples"] > 0
