"""Two gateways over one redis-server are one network, and peers move off a gateway that dies.

Real processes: a redis-server, two ``tendril gateway run --backend redis`` gateways A and B,
two workers (LeaseService + Arbiter each) with ``gateway.address = "A,B"``, and a test
scheduler that publishes through :class:`tendril.core.gateways.Gateways` (the client the
reference scheduler uses) with B first. The scheduler wants two workers, one lease each.

1. Worker on gateway A, scheduler on gateway B: the first request, published on B, reaches
   the arbiters subscribed on A; the first worker's offer is accepted.
2. Gateway A is SIGKILLed mid-allocation: the arbiters re-subscribe on B by themselves and the
   second request gets the other worker's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from tendril.core.config import WorkerConfig
from tendril.core.gateways import Gateways
from tendril.core.ports import free_ports
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2
from tests.procs import kill_group, running, spawn, spawn_service, wait_serving, worker_config
from tests.redis_server import redis_server
from tests.scheduler_double import Decision, SchedulerDouble

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GATEWAY = [sys.executable, "-m", "tendril.cli", "gateway", "run", "--log-format", "json"]


async def publish(gateways: Gateways, request: arbiter_pb2.ResourceRequest) -> int:
    payload = any_pb2.Any()
    payload.Pack(request)
    message = gateway_pb2.PublishRequest(topic="tendril/worker", sender=request.scheduler.id, payload=payload)
    reply = await gateways.call(lambda channel: gateway_pb2_grpc.BusServiceStub(channel).Publish(message, timeout=5))
    return reply.delivered


def subscriptions(log: Path) -> list[tuple[str, str]]:
    """(subscriber, ISO time) of every bus subscription a gateway's log shows."""
    out = []
    for text in log.read_text(errors="replace").splitlines():
        if '"bus.subscribed"' in text:
            with contextlib.suppress(json.JSONDecodeError):
                line = json.loads(text)
                out.append((line["subscriber"], line["timestamp"]))
    return out


async def test_worker_on_a_scheduler_on_b_then_a_dies_mid_allocation(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        a, b = (f"127.0.0.1:{port}" for port in free_ports(2))
        gateway = {
            name: spawn(
                [*GATEWAY, "--listen", address, "--backend", "redis", "--redis-url", redis.url],
                log=tmp_path / f"gateway-{name}.log",
                env={"PYTHONUNBUFFERED": "1"},  # gateway A's log must keep its lines through SIGKILL
            )
            for name, address in (("a", a), ("b", b))
        }
        with running(*gateway.values()):
            await asyncio.gather(wait_serving(a), wait_serving(b))  # up first, so the workers begin on A
            configs = [
                worker_config(
                    tmp_path / f"w{i}",
                    worker__id=f"worker-{i}",
                    gateway__address=f"{a},{b}",
                    lease__renewable_seconds=60,
                    arbiter__window_seconds=0.05,
                )
                for i in (1, 2)
            ]
            workers = [
                spawn_service(service, config, tmp_path / config.worker_id, name=service)
                for config in configs
                for service in ("lease", "arbiter")
            ]
            with running(*workers):
                await asyncio.gather(*(wait_serving(c.listen(s)) for c in configs for s in ("lease", "arbiter")))
                killed_at = await allocate(configs, gateway["a"], a, b)
        on_a, on_b = subscriptions(tmp_path / "gateway-a.log"), subscriptions(tmp_path / "gateway-b.log")
        assert sorted(who for who, _ in on_a) == ["worker-1", "worker-2"]  # the arbiters began on A ...
        assert on_b and all(at > killed_at for _, at in on_b)  # ... and moved to B once it died


async def allocate(configs: list[WorkerConfig], gateway_a: subprocess.Popen[bytes], a: str, b: str) -> str:
    """The scheduler's side: two leases, gateway A killed between them; returns the kill's ISO time."""
    leased: dict[str, str] = {}  # request id -> worker id
    first_leased = asyncio.Event()

    async def one_lease_per_request(offer: scheduler_pb2.OfferRequest) -> Decision:
        if offer.request_id in leased:
            return scheduler_pb2.OFFER_DECISION_REJECTED, "this request has its worker"
        leased[offer.request_id] = offer.worker.worker_id
        first_leased.set()
        return scheduler_pb2.OFFER_DECISION_ACCEPTED, "accepted"

    async with SchedulerDouble("sched-failover", decide=one_lease_per_request) as sched:
        gateways = Gateways(f"{b},{a}", peer_id=sched.id)
        try:
            # 1. published on B, it reaches both arbiters, subscribed on A (delivered counts both gateways)
            first = sched.request(cpu=1, memory_gib=1)
            deadline = time.monotonic() + 30
            while await publish(gateways, first) < 2:
                assert time.monotonic() < deadline, "the arbiters never subscribed"
                await asyncio.sleep(0.1)
            await asyncio.wait_for(first_leased.wait(), 30)
            assert gateways.current == b

            # 2. gateway A dies mid-allocation; the second request still gets the other worker
            killed_at = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
            kill_group(gateway_a)
            started = time.perf_counter()
            second = sched.request(cpu=1, memory_gib=1)
            deadline = time.monotonic() + 60
            while second.request_id not in leased:
                assert time.monotonic() < deadline, "no offer for the second request after gateway A died"
                await publish(gateways, second)  # as a scheduler republishes
                await asyncio.sleep(0.5)
            print(f"\nsecond lease {time.perf_counter() - started:.2f} s after gateway A was killed")
            assert {leased[first.request_id], leased[second.request_id]} == {"worker-1", "worker-2"}
            lease_address = {c.worker_id: c.listen("lease") for c in configs}
            accepted = [o for o in sched.offers if o.accepted]
            assert len(accepted) == 2
            for offer in accepted:
                address = lease_address[offer.request.worker.worker_id]
                lease = await sched.wait_renewable(address, offer.request.lease_id)
                assert (await sched.renew(address, lease.lease_id)).lease_id == lease.lease_id
            return killed_at
        finally:
            await gateways.close()
