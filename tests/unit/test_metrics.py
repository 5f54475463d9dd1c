"""The worker's Prometheus metrics: names, drop-reason labels, and adding up several processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tendril.arbiter.engine import Arbiter
from tendril.arbiter.model import Request
from tendril.arbiter.policy import Policy
from tendril.core import metrics
from tendril.core.amounts import Amount

NAME = re.compile(r"^tendril_[a-z][a-z0-9_]*[a-z0-9]$")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_metric_follows_the_prometheus_naming_conventions() -> None:
    registry = CollectorRegistry()
    registry.register(metrics.SupervisorCollector(lambda: {"leases": metrics.ServiceFigures(2, True)}))
    families = [f for f in REGISTRY.collect() if f.name.startswith("tendril")] + list(registry.collect())
    names = {f.name: f.type for f in families}
    assert len(names) >= 15, names
    for name, kind in names.items():
        assert NAME.match(name), name
        if kind == "counter":
            assert not name.endswith("_total"), f"{name}: the client library adds _total"
        if "seconds" in name:
            assert name.endswith("_seconds") and kind == "histogram", name
        if "bytes" in name:
            assert name.endswith("_bytes"), name
    exposed = generate_latest(REGISTRY).decode() + generate_latest(registry).decode()
    for family in text_string_to_metric_families(exposed):
        if family.name.startswith("tendril") and family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
    # The families the issue asks for, by their exposed names.
    for wanted in (
        "tendril_leases_active",
        "tendril_offers_total",
        "tendril_jobs_active",
        "tendril_jobs_completed_total",
        "tendril_service_restarts_total",
        "tendril_data_cache_hits_total",
        "tendril_data_cache_misses_total",
        "tendril_data_cache_bytes",
        "tendril_stream_sent_bytes_total",
        "tendril_stream_received_bytes_total",
        "tendril_paramserver_rounds_closed_total",
        "tendril_paramserver_round_duration_seconds_bucket",
        "tendril_data_wait_seconds_sum",
    ):
        assert f"\n{wanted}" in exposed, wanted


def _request(**changes: object) -> Request:
    values: dict[str, object] = {
        "request_id": "r1",
        "scheduler_id": "sched",
        "scheduler_address": "127.0.0.1:1",
        "resources": Amount(1, 1, 1, 0),
        "executors": (("example", "echo"),),
        "bid": 150.0,
        "deadline": 1000.0,
    }
    values.update(changes)
    return Request(**values)  # type: ignore[arg-type]


def test_every_drop_reason_the_arbiter_writes_has_its_own_label() -> None:
    policy = Policy(frozenset({("example", "echo")}), floor=100, price=100, strategy="whole")
    strict = Policy(frozenset({("example", "echo")}), 100, 100, "whole", allowed_schedulers=frozenset({"other"}))
    free = Amount(4, 8, 50, 0)
    cases = {
        "invalid": policy.drop_reason(_request(request_id=""), free, 0),
        "deadline": policy.drop_reason(_request(deadline=1.0), free, 5),
        "scheduler_not_allowed": strict.drop_reason(_request(), free, 0),
        "executor": policy.drop_reason(_request(executors=(("x", "y"),)), free, 0),
        "bid_below_floor": policy.drop_reason(_request(bid=1.0), free, 0),
        "no_room": policy.drop_reason(_request(resources=Amount(64, 1, 1, 0)), free, 0),
    }
    for label, reason in cases.items():
        assert reason is not None
        assert metrics.drop_reason_label(reason) == label, reason
    # The reasons the engine writes itself (window overflow, stopping, lease service down, ...).
    assert metrics.drop_reason_label("duplicate: request r1 came twice in one window; use a new request_id") == (
        "duplicate"
    )
    assert metrics.drop_reason_label("arbiter overloaded: too many requests waiting") == "overloaded"
    assert metrics.drop_reason_label("the arbiter is stopping") == "stopping"
    assert metrics.drop_reason_label("lease service unavailable, free resources unknown: x") == "lease_service"
    assert metrics.drop_reason_label("internal error while deciding: boom") == "internal"
    assert metrics.drop_reason_label("something new") == "other"
    assert Arbiter  # the engine module (which writes those reasons) imports the metrics it counts with


def test_count_offer_labels_only_drops_with_a_reason() -> None:
    def value(result: str, reason: str) -> float:
        got = REGISTRY.get_sample_value("tendril_offers_total", {"result": result, "reason": reason})
        return got or 0.0

    accepted, no_room = value("accepted", ""), value("dropped", "no_room")
    metrics.count_offer("accepted", "fine")
    metrics.count_offer("dropped", "does not fit the free resources: cpu")
    assert value("accepted", "") == accepted + 1
    assert value("dropped", "no_room") == no_room + 1


def test_totals_mirror_counts_growth_and_never_goes_back() -> None:
    registry = CollectorRegistry()
    counter = Counter("mirror_test", "test", registry=registry)

    class Totals:
        hits = 0

    mirror = metrics.TotalsMirror({"hits": counter})
    totals = Totals()
    totals.hits = 3
    mirror.update(totals)
    totals.hits = 2  # a core corrected itself
    mirror.update(totals)
    totals.hits = 5
    mirror.update(totals)
    assert registry.get_sample_value("mirror_test_total") == 5


_CHILD = textwrap.dedent(
    """
    import os
    import sys
    from tendril.core import metrics
    metrics.JOBS_COMPLETED.labels(state="succeeded").inc(int(sys.argv[1]))
    metrics.JOBS_ACTIVE.set(int(sys.argv[1]))
    metrics.set_leases_active(["renewable"])
    metrics.BYTES_SENT.labels(stream="update_push").inc(1000)
    metrics.round_closed(2.0)
    print(os.getpid(), flush=True)
    """
)


def test_values_of_several_processes_add_up_and_dead_ones_leave_the_gauges(tmp_path: Path) -> None:
    folder = metrics.prepare_multiprocess_dir(tmp_path / "metrics")
    (folder / "counter_999999.db").write_bytes(b"stale file of an earlier run")
    folder = metrics.prepare_multiprocess_dir(folder)
    assert list(folder.iterdir()) == []  # an earlier run's values are gone
    pids = []
    for n in (2, 3):
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(n)],
            env={**os.environ, **metrics.child_env(folder)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        pids.append(int(done.stdout))
    figures = {"jobs": metrics.ServiceFigures(restarts=1, serving=True)}
    registry = metrics.multiprocess_registry(folder, metrics.SupervisorCollector(lambda: figures))
    got = samples(generate_latest(registry).decode())
    assert got[("tendril_jobs_completed_total", (("state", "succeeded"),))] == 5
    assert got[("tendril_jobs_active", ())] == 5
    assert got[("tendril_leases_active", (("kind", "renewable"),))] == 2
    assert got[("tendril_stream_sent_bytes_total", (("stream", "update_push"),))] == 2000
    assert got[("tendril_paramserver_rounds_closed_total", ())] == 2
    assert got[("tendril_paramserver_round_duration_seconds_count", ())] == 2
    assert got[("tendril_service_restarts_total", (("service", "jobs"),))] == 1
    assert got[("tendril_service_up", (("service", "jobs"),))] == 1

    metrics.mark_process_dead(folder, pids[0])
    got = samples(generate_latest(registry).decode())
    assert got[("tendril_jobs_active", ())] == 3  # only the live process's gauge is left
    assert got[("tendril_leases_active", (("kind", "renewable"),))] == 1
    assert got[("tendril_jobs_completed_total", (("state", "succeeded"),))] == 5  # counters keep their totals
