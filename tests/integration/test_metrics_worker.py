"""`tendril worker run` serves one Prometheus endpoint for all of its processes, and it moves.

An offer accepted through the Arbiter, a dropped request, a lease, a job run to its end and a
crashed-and-restarted LeaseService each show up on ``GET /metrics`` of the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families

from tendril.core.channel import open_channel
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.common.v1 import common_pb2
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tests.integration.test_supervisor import SCHEDULER, Worker, _wait_all_serving, started
from tests.scheduler_double import SchedulerDouble, accept

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

FAMILIES = {
    "tendril_leases_active",
    "tendril_offers",
    "tendril_jobs_active",
    "tendril_jobs_completed",
    "tendril_executors_started",
    "tendril_service_restarts",
    "tendril_service_up",
    "tendril_data_cache_hits",
    "tendril_data_cache_misses",
    "tendril_data_cache_bytes",
    "tendril_data_wait_seconds",
    "tendril_stream_sent_bytes",
    "tendril_stream_received_bytes",
    "tendril_paramserver_rounds_closed",
    "tendril_paramserver_round_duration_seconds",
}


def _scrape(url: str) -> tuple[set[str], Samples]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    families, samples = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def _until(url: str, check: Callable[[Samples], bool], what: str, timeout: float = 30.0) -> Samples:
    """Scrape until ``check`` holds (metrics of other processes arrive when those processes act)."""
    deadline = time.monotonic() + timeout
    while True:
        _, samples = await asyncio.to_thread(_scrape, url)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            tendril = {k: v for k, v in samples.items() if k[0].startswith("tendril")}
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last scrape: {tendril}")
        await asyncio.sleep(0.1)


async def _dispatch(worker: Worker, lease_id: str) -> None:
    config = struct_pb2.Struct()
    config.update({"sleep_seconds": 1.5})
    async with open_channel(worker.config.listen("job"), peer_id=SCHEDULER) as channel:
        await job_pb2_grpc.JobServiceStub(channel).Dispatch(
            job_pb2.DispatchRequest(
                job_id="metered",
                lease_id=lease_id,
                executor=common_pb2.ExecutorRef(executor_class="example", name="echo"),
                config=config,
            ),
            timeout=30,
        )


async def test_one_endpoint_for_the_worker_and_its_counters_move(tmp_path: Path) -> None:
    with started(tmp_path, lease__renewable_seconds=120, lease__temporary_seconds=5) as worker:
        await _wait_all_serving(worker)
        config = worker.config
        url = f"http://{config.metrics_listen()}/metrics"
        assert f"metrics {url}" in worker.output()
        families, samples = await asyncio.to_thread(_scrape, url)
        assert families >= FAMILIES, FAMILIES - families
        for name in worker.status()["children"]:
            assert _value(samples, "tendril_service_up", service=name) == 1
            assert _value(samples, "tendril_service_restarts_total", service=name) == 0

        async with SchedulerDouble(SCHEDULER, decide=accept()) as sched:
            # Dropped: a bid under the floor. Accepted: the scheduler double takes the offer.
            dropped = await sched.solicit(config.listen("arbiter"), sched.request(cpu=1, memory_gib=1, bid=1))
            assert dropped.state == arbiter_pb2.OFFER_STATE_DROPPED
            offer = await sched.solicit(config.listen("arbiter"), sched.request(cpu=1, memory_gib=1, bid=120))
            assert offer.state == arbiter_pb2.OFFER_STATE_ACCEPTED
            lease = await sched.wait_renewable(config.listen("lease"), offer.lease_id)
            samples = await _until(
                url,
                lambda s: _value(s, "tendril_leases_active", kind="renewable") == 1,
                "one renewable lease",
            )
            assert _value(samples, "tendril_offers_total", result="accepted", reason="") == 1
            assert _value(samples, "tendril_offers_total", result="dropped", reason="bid_below_floor") == 1
            assert _value(samples, "tendril_leases_active", kind="temporary") == 0

            await _dispatch(worker, lease.lease_id)
            await _until(url, lambda s: _value(s, "tendril_jobs_active") == 1, "the job running")
            samples = await _until(
                url,
                lambda s: _value(s, "tendril_jobs_completed_total", state="succeeded") == 1,
                "the job succeeded",
            )
            assert _value(samples, "tendril_jobs_active") == 0
            assert _value(samples, "tendril_executors_started_total") == 1

        # A crashed LeaseService: counted as a restart; its dead process's gauge no longer
        # counts, so the reconciled lease is there once, not twice.
        old = worker.child("lease")["pid"]
        os.kill(old, signal.SIGKILL)
        samples = await _until(
            url,
            lambda s: (
                _value(s, "tendril_service_restarts_total", service="lease") == 1
                and _value(s, "tendril_service_up", service="lease") == 1
            ),
            "the LeaseService restarted",
        )
        assert worker.child("lease")["pid"] != old
        assert _value(samples, "tendril_leases_active", kind="renewable") == 1
        assert _value(samples, "tendril_offers_total", result="accepted", reason="") == 1  # counters keep totals
