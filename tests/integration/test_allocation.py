"""Allocation through real processes: gateway, LeaseService and Arbiter, plus a real test scheduler.

publish -> offer -> accept -> renewable lease (the owner's first renewal or the arbiter's
confirm, whichever lands first) -> renew (owner only); a renewal after a withdrawn, rejected or
expired offer finds nothing; explicit reject frees at once; two schedulers racing never
overlap; the arbiter survives a gateway restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig
from tendril.core.timeutil import from_timestamp
from tendril.scheduler.leasekeeper import LeaseKeeper
from tendril_proto.arbiter.v1 import arbiter_pb2, arbiter_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_proto.scheduler.v1 import scheduler_pb2
from tendril_sdk.errors import error_reason
from tests.procs import kill_group, running, spawn_service, wait_serving, worker_config
from tests.scheduler_double import Decider, Decision, SchedulerDouble, accept, delay, reject

pytestmark = pytest.mark.integration

SERVICES = ("gateway", "lease", "arbiter")


@contextlib.asynccontextmanager
async def worker(tmp: Path, config: WorkerConfig) -> AsyncIterator[dict[str, object]]:
    """Gateway, LeaseService and Arbiter as separate processes; all killed at the end."""
    procs = {name: spawn_service(name, config, tmp) for name in SERVICES}
    with running(*procs.values()):
        await asyncio.gather(
            wait_serving(config.gateway.embedded_listen),
            wait_serving(config.listen("lease")),
            wait_serving(config.listen("arbiter")),
        )
        yield procs  # type: ignore[misc]


async def lease_events(address: str, sink: list[tuple[float, lease_pb2.WatchResponse]]) -> asyncio.Task[None]:
    """Record every lease event (with its arrival time) until cancelled; returns once watching."""
    channel = open_channel(address, peer_id="observer")
    call = lease_pb2_grpc.LeaseServiceStub(channel).Watch(lease_pb2.WatchRequest())
    await call.initial_metadata()

    async def pump() -> None:
        try:
            async for event in call:
                sink.append((time.perf_counter(), event))
        finally:
            await channel.close()

    return asyncio.create_task(pump())


def live_leases(events: list[tuple[float, lease_pb2.WatchResponse]]) -> dict[str, float]:
    """Replay lease events: the live leases (id -> cpu) after the last one."""
    live: dict[str, float] = {}
    for _, event in events:
        if event.type in (lease_pb2.LEASE_EVENT_TYPE_RESERVED, lease_pb2.LEASE_EVENT_TYPE_EXISTING):
            live[event.lease.lease_id] = event.lease.resources.cpu
        elif event.type in (lease_pb2.LEASE_EVENT_TYPE_RELEASED, lease_pb2.LEASE_EVENT_TYPE_EXPIRED):
            live.pop(event.lease.lease_id, None)
    return live


async def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.005)


def accept_and_keep(sched: SchedulerDouble, lease_address: str, held: dict[str, float]) -> Decider:
    """Accept like the reference scheduler: start its LeaseKeeper's first renewal, then answer.

    ``held[request_id]`` is the time.perf_counter() at which the scheduler holds the renewable lease.
    """

    async def decide(offer: scheduler_pb2.OfferRequest) -> Decision:
        keeper = LeaseKeeper(sched.channel(lease_address), offer.lease_id, offer.worker.worker_id)

        async def keep() -> None:
            await keeper.confirmed()
            held[offer.request_id] = time.perf_counter()

        asyncio.get_running_loop().create_task(keep())
        return scheduler_pb2.OFFER_DECISION_ACCEPTED, "accepted by the test scheduler"

    return decide


def count_events(events: list[tuple[float, lease_pb2.WatchResponse]], kind: int, lease_id: str) -> int:
    return sum(1 for _, e in events if e.type == kind and e.lease.lease_id == lease_id)


async def test_publish_offer_accept_renew(tmp_path: Path) -> None:
    config = worker_config(
        tmp_path, lease__temporary_seconds=3, arbiter__offer_timeout_seconds=2.5, lease__renewable_seconds=10
    )
    lease_addr = config.listen("lease")
    held: dict[str, float] = {}
    async with worker(tmp_path, config), SchedulerDouble("sched-a") as sched:
        sched.set_decider(accept_and_keep(sched, lease_addr, held))
        events: list[tuple[float, lease_pb2.WatchResponse]] = []
        watcher = await lease_events(lease_addr, events)
        latencies = []
        held_latencies = []
        try:
            for round_ in range(3):
                request = sched.request(cpu=1, memory_gib=1, bid=120)
                sent = await sched.publish(config.gateway.embedded_listen, request)
                await wait_for(lambda rid=request.request_id: rid in held, what="renewable lease held")
                held_latencies.append((held[request.request_id] - sent) * 1000)

                def confirmed(rid: str = request.request_id) -> bool:
                    return any(
                        e.type == lease_pb2.LEASE_EVENT_TYPE_CONFIRMED and e.lease.request_id == rid for _, e in events
                    )

                await wait_for(confirmed, what="lease confirmed")
                at = next(
                    t
                    for t, e in events
                    if e.type == lease_pb2.LEASE_EVENT_TYPE_CONFIRMED and e.lease.request_id == request.request_id
                )
                latencies.append((at - sent) * 1000)
                offer = sched.offers[round_]
                assert offer.caller == "worker-test"
                assert offer.request.request_id == request.request_id
                lease = await sched.wait_renewable(lease_addr, offer.request.lease_id)
                assert lease.owner_id == "sched-a" and lease.request_id == request.request_id
                # whole strategy: the worker's every resource, at max(price 100, bid 120)
                assert lease.resources.cpu == 4 and lease.resources.memory_gib == 8 and lease.price == 120
                if round_ == 0:
                    worker_rec = offer.request.worker
                    assert worker_rec.worker_id == "worker-test"
                    assert worker_rec.endpoints.lease == lease_addr
                    assert worker_rec.endpoints.arbiter == config.listen("arbiter")
                    assert worker_rec.endpoints.job and worker_rec.endpoints.parameter_server
                    assert worker_rec.resources.cpu == 4
                    assert {(e.executor_class, e.name) for e in worker_rec.executors} >= {("example", "echo")}
                    # the call's deadline is the offer's expiry: before the temporary lease's own
                    assert from_timestamp(offer.request.expires_at) <= from_timestamp(lease.created_at) + 3

                    before = time.time()
                    renewed = await sched.renew(lease_addr, lease.lease_id)
                    after = time.time()
                    assert before + 10 - 0.01 <= from_timestamp(renewed.expires_at) <= after + 10 + 0.01
                    intruder = SchedulerDouble("sched-intruder")
                    await intruder.start()
                    try:
                        with pytest.raises(grpc.aio.AioRpcError) as denied:
                            await intruder.renew(lease_addr, lease.lease_id)
                        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
                        assert error_reason(denied.value) == "NOT_THE_OWNER"
                        assert "sched-a" in denied.value.details()
                        with pytest.raises(grpc.aio.AioRpcError) as release_denied:
                            await intruder.release(lease_addr, lease.lease_id)
                        assert release_denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
                    finally:
                        await intruder.stop()
                await sched.release(lease_addr, lease.lease_id)
        finally:
            watcher.cancel()
        print(
            f"\nallocation latency publish -> CONFIRMED (window {config.arbiter.window_seconds * 1000:.0f} ms): "
            + ", ".join(f"{ms:.1f} ms" for ms in latencies)
            + f"; median {statistics.median(latencies):.1f} ms; "
            + "-> renewable lease in the scheduler's hand: "
            + ", ".join(f"{ms:.1f} ms" for ms in held_latencies)
            + f"; median {statistics.median(held_latencies):.1f} ms"
        )
        for offer in sched.offers:
            assert count_events(events, lease_pb2.LEASE_EVENT_TYPE_CONFIRMED, offer.request.lease_id) == 1
        # NOTE: the arbiter learns of an acceptance from the lease watch, a moment after the
        # scheduler holds the lease (the newest one may lag on a busy machine): bounded wait.
        async with open_channel(config.listen("arbiter")) as channel:
            deadline = time.monotonic() + 5.0
            while True:
                listed = await arbiter_pb2_grpc.ArbiterServiceStub(channel).ListOffers(arbiter_pb2.ListOffersRequest())
                accepted = [o.state for o in listed.offers] == [arbiter_pb2.OFFER_STATE_ACCEPTED] * 3
                if accepted or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        assert [o.state for o in listed.offers] == [arbiter_pb2.OFFER_STATE_ACCEPTED] * 3
        assert listed.offers[0].request_id == sched.offers[-1].request.request_id  # newest first


async def test_owner_renewal_before_the_arbiter_hears_accepted(tmp_path: Path) -> None:
    """The scheduler's renewal lands first; the arbiter's confirm after it is no failure."""
    config = worker_config(tmp_path, lease__temporary_seconds=3, arbiter__offer_timeout_seconds=2.5)
    lease_addr = config.listen("lease")
    async with worker(tmp_path, config), SchedulerDouble("sched-early") as sched:
        events: list[tuple[float, lease_pb2.WatchResponse]] = []
        watcher = await lease_events(lease_addr, events)
        renewed: list[lease_pb2.Lease] = []

        async def renew_then_accept(offer: scheduler_pb2.OfferRequest) -> Decision:
            renewed.append(await sched.renew(lease_addr, offer.lease_id))
            return scheduler_pb2.OFFER_DECISION_ACCEPTED, "renewed first"

        sched.set_decider(renew_then_accept)
        try:
            offer = await sched.solicit(config.listen("arbiter"), sched.request(cpu=1, bid=150))
            assert offer.state == arbiter_pb2.OFFER_STATE_ACCEPTED and offer.reason == "renewed first"
            assert renewed[0].kind == lease_pb2.LEASE_KIND_RENEWABLE
            lease = await sched.get(lease_addr, offer.lease_id)
            assert lease.kind == lease_pb2.LEASE_KIND_RENEWABLE
            assert lease.expires_at == renewed[0].expires_at, "the arbiter's later confirm changed nothing"
            await wait_for(lambda: count_events(events, lease_pb2.LEASE_EVENT_TYPE_CONFIRMED, offer.lease_id) >= 1)
            await asyncio.sleep(0.1)
            assert count_events(events, lease_pb2.LEASE_EVENT_TYPE_CONFIRMED, offer.lease_id) == 1
            await sched.release(lease_addr, offer.lease_id)
        finally:
            watcher.cancel()


async def test_renewal_after_a_withdrawn_or_rejected_offer_finds_nothing(tmp_path: Path) -> None:
    """An offer that timed out or was rejected is released; the owner renewing it later cannot bring it back."""
    config = worker_config(tmp_path, lease__temporary_seconds=3, arbiter__offer_timeout_seconds=0.3)
    lease_addr = config.listen("lease")
    async with worker(tmp_path, config), SchedulerDouble("sched-late", decide=delay(1.0)) as sched:
        events: list[tuple[float, lease_pb2.WatchResponse]] = []
        watcher = await lease_events(lease_addr, events)
        try:
            timed_out = await sched.solicit(config.listen("arbiter"), sched.request(cpu=1, bid=150))
            assert timed_out.state == arbiter_pb2.OFFER_STATE_TIMED_OUT
            sched.set_decider(reject("no thanks"))
            rejected = await sched.solicit(config.listen("arbiter"), sched.request(cpu=1, bid=150))
            assert rejected.state == arbiter_pb2.OFFER_STATE_REJECTED
            for offer in (timed_out, rejected):
                with pytest.raises(grpc.aio.AioRpcError) as gone:
                    await sched.renew(lease_addr, offer.lease_id)
                assert gone.value.code() == grpc.StatusCode.NOT_FOUND
                assert error_reason(gone.value) == "LEASE_NOT_FOUND" and "released" in gone.value.details()
                assert count_events(events, lease_pb2.LEASE_EVENT_TYPE_CONFIRMED, offer.lease_id) == 0
            cap = await sched.leases(lease_addr).GetCapacity(lease_pb2.GetCapacityRequest())
            assert cap.free == cap.total
        finally:
            watcher.cancel()


async def test_solicit_validates_and_answers(tmp_path: Path) -> None:
    config = worker_config(tmp_path, lease__temporary_seconds=3, arbiter__offer_timeout_seconds=2.5)
    async with worker(tmp_path, config), SchedulerDouble("sched-s", decide=accept()) as sched:
        arbiter = config.listen("arbiter")
        offer = await sched.solicit(arbiter, sched.request(cpu=1, bid=150))
        assert offer.state == arbiter_pb2.OFFER_STATE_ACCEPTED and offer.lease_id
        lease = await sched.wait_renewable(config.listen("lease"), offer.lease_id)
        assert lease.owner_id == "sched-s"
        # the worker is fully leased now (whole strategy): the next request is dropped, with a reason
        dropped = await sched.solicit(arbiter, sched.request(cpu=1, bid=150))
        assert dropped.state == arbiter_pb2.OFFER_STATE_DROPPED and "does not fit" in dropped.reason
        await sched.release(config.listen("lease"), lease.lease_id)
        cheap = await sched.solicit(arbiter, sched.request(cpu=1, bid=5))
        assert cheap.state == arbiter_pb2.OFFER_STATE_DROPPED and "floor" in cheap.reason

        bad = [
            sched.request(request_id="x", deadline_in=-1),
            sched.request(executors=()),
        ]
        no_address = sched.request()
        no_address.scheduler.address = ""
        bad.append(no_address)
        for request in bad:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await sched.solicit(arbiter, request)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "invalid ResourceRequest" in err.value.details()
        other = SchedulerDouble("sched-other")
        await other.start()
        try:
            with pytest.raises(grpc.aio.AioRpcError) as foreign:
                await other.solicit(arbiter, sched.request())  # names sched-s, called as sched-other
            assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            await other.stop()


async def test_explicit_reject_frees_resources_at_once(tmp_path: Path) -> None:
    # NOTE: a 30 s temporary lease: if the reject did not release it, it would hold for 30 s.
    config = worker_config(tmp_path, lease__temporary_seconds=30, arbiter__offer_timeout_seconds=20)
    lease_addr = config.listen("lease")
    async with worker(tmp_path, config), SchedulerDouble("sched-r") as sched:
        seen_reserved: list[float] = []

        async def reject_after_looking(offer: scheduler_pb2.OfferRequest) -> Decision:
            # while the offer is out, the reservation holds the worker
            cap = await sched.leases(lease_addr).GetCapacity(lease_pb2.GetCapacityRequest())
            seen_reserved.append(cap.reserved.cpu)
            return await reject("no thanks")(offer)

        sched.set_decider(reject_after_looking)
        async with open_channel(lease_addr) as channel:
            stub = lease_pb2_grpc.LeaseServiceStub(channel)
            offer = await sched.solicit(config.listen("arbiter"), sched.request(cpu=2, bid=100))
            returned = time.perf_counter()
            assert offer.state == arbiter_pb2.OFFER_STATE_REJECTED and offer.reason == "no thanks"
            assert seen_reserved == [4.0]
            # Solicit returns once the arbiter released the lease: free is back right away
            cap = await stub.GetCapacity(lease_pb2.GetCapacityRequest())
            assert cap.free == cap.total and cap.reserved.cpu == 0
            assert (await stub.List(lease_pb2.ListRequest())).leases == []

            # the bus path: the scheduler's Offer call returns, then the release follows within ms
            sched.set_decider(reject("bus reject"))
            await sched.publish(config.gateway.embedded_listen, sched.request(cpu=1, bid=100))
            got = await sched.wait_offers(2)
            await wait_for(lambda: got[1].answered_at is not None, what="answer")
            while True:
                cap = await stub.GetCapacity(lease_pb2.GetCapacityRequest())
                if cap.free == cap.total:
                    break
                await asyncio.sleep(0.001)
            freed_ms = (time.perf_counter() - got[1].answered_at) * 1000
        print(
            f"\nexplicit reject: resources free again {freed_ms:.1f} ms after the scheduler answered (lease ttl 30 s)"
        )
        assert freed_ms < 5000  # far below the 30 s the lease would otherwise hold
        assert returned > 0


async def test_two_schedulers_racing_never_overlap(tmp_path: Path) -> None:
    config = worker_config(
        tmp_path,
        arbiter__strategy="flexible",
        lease__temporary_seconds=3,
        arbiter__offer_timeout_seconds=2.5,
        arbiter__window_seconds=0.05,
    )
    lease_addr = config.listen("lease")
    total_cpu = 4.0
    async with worker(tmp_path, config):
        events: list[tuple[float, lease_pb2.WatchResponse]] = []
        watcher = await lease_events(lease_addr, events)
        scheds = [SchedulerDouble(f"racer-{i}") for i in range(2)]
        for s in scheds:
            await s.start()
        observations: list[float] = []
        try:

            def hold_then_release(s: SchedulerDouble):  # type: ignore[no-untyped-def]
                async def decide(offer: scheduler_pb2.OfferRequest) -> Decision:
                    listed = await s.leases(lease_addr).List(lease_pb2.ListRequest())
                    observations.append(sum(lease.resources.cpu for lease in listed.leases))

                    async def release_soon() -> None:
                        lease = await s.wait_renewable(lease_addr, offer.lease_id)
                        await asyncio.sleep(0.03)
                        await s.release(lease_addr, lease.lease_id)

                    asyncio.get_running_loop().create_task(release_soon())
                    return scheduler_pb2.OFFER_DECISION_ACCEPTED, "mine"

                return decide

            for s in scheds:
                s.set_decider(hold_then_release(s))

            async def race(s: SchedulerDouble) -> list[int]:
                states = []
                for i in range(16):
                    request = s.request(cpu=3, memory_gib=1, bid=100 + i)
                    if i % 2:
                        await s.publish(config.gateway.embedded_listen, request)
                        await asyncio.sleep(0.02)
                    else:
                        states.append((await s.solicit(config.listen("arbiter"), request)).state)
                return states

            async def poll() -> None:
                async with open_channel(lease_addr) as channel:
                    stub = lease_pb2_grpc.LeaseServiceStub(channel)
                    while True:
                        listed = await stub.List(lease_pb2.ListRequest())
                        observations.append(sum(lease.resources.cpu for lease in listed.leases))
                        await asyncio.sleep(0.005)

            poller = asyncio.create_task(poll())
            try:
                results = await asyncio.gather(*(race(s) for s in scheds))
                # let the bus requests' offers finish
                await wait_for(lambda: all(o.answered_at for s in scheds for o in s.offers), what="offers answered")
                await wait_for(lambda: not live_leases(events), what="every lease released")
            finally:
                poller.cancel()
        finally:
            watcher.cancel()
            for s in scheds:
                await s.stop()
        # replay the ledger's own event stream: the live set never exceeds the worker
        peak = 0.0
        for n in range(1, len(events) + 1):
            reserved = sum(live_leases(events[:n]).values())
            assert reserved <= total_cpu, f"double booking after event {n}: {reserved} cpu reserved"
            peak = max(peak, reserved)
        accepted = [o for s in scheds for o in s.offers if o.accepted]
        print(
            f"\nrace: {sum(len(s.offers) for s in scheds)} offers, {len(accepted)} accepted "
            f"({', '.join(f'{s.id}: {sum(o.accepted for o in s.offers)}' for s in scheds)}), "
            f"{len(observations)} observations, peak cpu reserved {peak:g} of {total_cpu:g}"
        )
        assert observations and max(observations) <= total_cpu
        assert len(accepted) >= 2
        assert {o.request.worker.worker_id for o in accepted} == {"worker-test"}
        solicited = [state for states in results for state in states]
        assert set(solicited) <= {arbiter_pb2.OFFER_STATE_ACCEPTED, arbiter_pb2.OFFER_STATE_DROPPED}


async def test_arbiter_reconnects_after_gateway_restart(tmp_path: Path) -> None:
    config = worker_config(tmp_path, lease__temporary_seconds=3, arbiter__offer_timeout_seconds=2.5)
    async with worker(tmp_path, config) as procs, SchedulerDouble("sched-g", decide=reject("just looking")) as sched:
        gateway = config.gateway.embedded_listen
        await sched.publish(gateway, sched.request())
        await sched.wait_offers(1)
        kill_group(procs["gateway"])  # type: ignore[arg-type]
        restarted = spawn_service("gateway", config, tmp_path, name="gateway-2")
        with running(restarted):
            await wait_serving(gateway)
            started = time.perf_counter()
            await sched.publish(gateway, sched.request())  # retried until the arbiter is back
            await sched.wait_offers(2)
            print(f"\narbiter back on the restarted gateway and offering after {time.perf_counter() - started:.2f} s")
