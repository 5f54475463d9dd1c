"""The bench's gateway section end to end at a tiny size: a real gateway process, simulated
workers in two load processes, schedulers publishing; the figures' shape checked and nothing
left running or listening (the numbers themselves are judged only by ``make bench``)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from bench import gateway
from tests.integration.test_bench_sync import _listening_sockets_of_this_process, _processes_mentioning
from tests.redis_proc import NO_REDIS, REDIS_SERVER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_gateway_figures_shape_and_cleanup(tmp_path: Path, backend: str) -> None:
    if backend == "redis" and REDIS_SERVER is None:
        pytest.skip(NO_REDIS)
    listening_before = _listening_sockets_of_this_process()

    figures = gateway.measure(
        tmp_path, backend=backend, steps=(8, 16), schedulers=3, window=2.0, ttl=3.0, requests_per_second=3.0
    )

    names = [f.name for f in figures]
    assert all("gateway" in name for name in names), names
    assert names == [
        f"gateway ({backend}) publish→offer latency p50, 16 workers",
        f"gateway ({backend}) publish→offer latency p99, 16 workers",
        f"gateway ({backend}) publish→delivery latency p99, 16 workers",
        f"gateway ({backend}) registry writes/s, 16 workers",
        f"gateway ({backend}) CPU, 16 workers",
        f"gateway ({backend}) RSS, 16 workers",
        f"gateway ({backend}) workers held at p99 offer ≤ 1 s",
    ]
    p50, p99, delivery, writes, cpu, rss, held = figures
    assert delivery.value is not None and -0.01 <= delivery.value <= p99.value + 0.05  # two clocks, one host
    assert p50.value is not None and p99.value is not None and 0 < p50.value <= p99.value
    assert p99.target == "≤ 1 s" and p99.ok == (p99.value <= 1.0)
    assert writes.value is not None and writes.value > 0  # 16 records refreshed every second
    assert cpu.value is not None and cpu.value > 0
    assert rss.value is not None and rss.value > 10 * 2**20
    assert held.value in (0.0, 8.0, 16.0)
    steps = p50.details["steps"]
    assert [s["workers"] for s in steps] == [8, 16][: len(steps)]
    for step in steps:
        assert step["subscribed"] == step["workers"]
        assert step["requests_published"] > 0 and step["publish_failures"] == 0
        assert step["offers_expected"] == step["requests_published"] * step["workers"]
        assert step["puts_ok"] > 0 and step["puts_failed"] == 0  # no Put refused: ownership and rate limits hold
        assert len(step["load_cpu_cores"]) == 2
    assert p50.details["load_average_before"] and p50.details["backend"] == backend
    if backend == "redis":  # its own redis-server, measured, and stopped with the bench
        assert all(s["backend_rss_bytes"] > 0 and s["backend_cpu_cores"] is not None for s in steps)
        pid = steps[0]["backend_pid"]
        assert pid and not psutil.pid_exists(pid)

    assert _processes_mentioning(str(tmp_path)) == []
    assert _processes_mentioning("bench.gateway_load") == []
    assert _processes_mentioning(f"--listen={p50.details['gateway']}") == []  # the gateway process
    assert _listening_sockets_of_this_process() <= listening_before


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown gateway backend 'nope'"):
        gateway.measure(tmp_path, backend="nope")
