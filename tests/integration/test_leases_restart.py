"""LeaseService as a real process: bad input over gRPC, and kill -9 + restart keeps every unexpired lease."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from tendril.core.channel import open_channel
from tendril.core.timeutil import from_timestamp
from tendril_proto.common.v1 import common_pb2
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_sdk.errors import error_reason
from tests.procs import kill_group, running, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

WORKER = "worker-test"


def stub_as(channel: grpc.aio.Channel) -> lease_pb2_grpc.LeaseServiceStub:
    return lease_pb2_grpc.LeaseServiceStub(channel)


async def test_kill9_and_restart_keeps_unexpired_leases(tmp_path: Path) -> None:
    config = worker_config(tmp_path, lease__temporary_seconds=0.5, lease__renewable_seconds=30)
    address = config.listen("lease")
    first = spawn_service("lease", config, tmp_path)
    with running(first):
        await wait_serving(address)
        async with open_channel(address, peer_id=WORKER) as worker_ch, open_channel(address, peer_id="sched") as sch:
            worker, sched = stub_as(worker_ch), stub_as(sch)

            async def reserve(cpu: float, request_id: str) -> lease_pb2.Lease:
                reply = await worker.Reserve(
                    lease_pb2.ReserveRequest(
                        owner_id="sched",
                        resources=common_pb2.Resources(cpu=cpu, memory_gib=1),
                        price=100,
                        request_id=request_id,
                    )
                )
                return reply.lease

            kept = await reserve(1, "kept")
            await worker.Confirm(lease_pb2.ConfirmRequest(lease_id=kept.lease_id))
            kept = (await sched.Renew(lease_pb2.RenewRequest(lease_id=kept.lease_id))).lease
            kept2 = await reserve(2, "kept2")
            kept2 = (await worker.Confirm(lease_pb2.ConfirmRequest(lease_id=kept2.lease_id))).lease
            short = await reserve(0.5, "short")  # temporary, 0.5 s: it runs out while the service is down
            released = await reserve(0.5, "released")
            await sched.Release(lease_pb2.ReleaseRequest(lease_id=released.lease_id))
        kill_group(first)  # kill -9, no goodbye
        assert first.returncode == -9

    # wait (by the lease's own clock) until the short lease has run out while nothing runs
    await asyncio.sleep(max(0.0, from_timestamp(short.expires_at) - time.time()) + 0.05)
    started = time.perf_counter()
    second = spawn_service("lease", config, tmp_path, name="lease-2")
    with running(second):
        await wait_serving(address)
        restart_s = time.perf_counter() - started
        async with open_channel(address, peer_id="sched") as sch, open_channel(address, peer_id="observer") as obs:
            sched = stub_as(sch)
            listed = (await sched.List(lease_pb2.ListRequest())).leases
            assert [lease.lease_id for lease in listed] == [kept.lease_id, kept2.lease_id]
            assert listed[0] == kept and listed[1] == kept2  # owner, kind, resources, times: all kept
            cap = await sched.GetCapacity(lease_pb2.GetCapacityRequest())
            assert cap.reserved.cpu == 3 and cap.free.cpu == 1
            # a watcher (JobService) sees them as EXISTING first, then changes
            call = stub_as(obs).Watch(lease_pb2.WatchRequest())
            existing = [await asyncio.wait_for(call.read(), 5) for _ in range(2)]
            assert [e.type for e in existing] == [lease_pb2.LEASE_EVENT_TYPE_EXISTING] * 2
            assert {e.lease.lease_id for e in existing} == {kept.lease_id, kept2.lease_id}
            renewed = await sched.Renew(lease_pb2.RenewRequest(lease_id=kept.lease_id))
            assert from_timestamp(renewed.lease.expires_at) >= from_timestamp(kept.expires_at)
            event = await asyncio.wait_for(call.read(), 5)
            assert event.type == lease_pb2.LEASE_EVENT_TYPE_RENEWED
            call.cancel()
            # what ran out while the service was down is gone, and Renew says why
            with pytest.raises(grpc.aio.AioRpcError) as expired:
                await sched.Renew(lease_pb2.RenewRequest(lease_id=short.lease_id))
            assert expired.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_reason(expired.value) == "LEASE_EXPIRED"
            for gone in (short.lease_id, released.lease_id):
                with pytest.raises(grpc.aio.AioRpcError) as missing:
                    await sched.Get(lease_pb2.GetRequest(lease_id=gone))
                assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    print(f"\nLeaseService restart after kill -9: SERVING again in {restart_s:.2f} s, 2 leases kept, 1 pruned")
    log = (tmp_path / "lease-2.log").read_text()
    assert "leases.reconciled" in log and short.lease_id in log


async def test_bad_input_status_codes(tmp_path: Path) -> None:
    config = worker_config(tmp_path, lease__temporary_seconds=5)
    address = config.listen("lease")
    proc = spawn_service("lease", config, tmp_path)
    with running(proc):
        await wait_serving(address)
        async with (
            open_channel(address, peer_id=WORKER) as w,
            open_channel(address, peer_id="sched") as s,
            open_channel(address) as anonymous,
        ):
            worker, sched = stub_as(w), stub_as(s)
            lease = (
                await worker.Reserve(
                    lease_pb2.ReserveRequest(owner_id="sched", resources=common_pb2.Resources(cpu=1), price=1)
                )
            ).lease
            cases = [
                (sched.Renew(lease_pb2.RenewRequest()), grpc.StatusCode.INVALID_ARGUMENT, "LEASE_ID_MISSING"),
                (sched.Get(lease_pb2.GetRequest(lease_id="nope")), grpc.StatusCode.NOT_FOUND, "LEASE_NOT_FOUND"),
                (
                    sched.Confirm(lease_pb2.ConfirmRequest(lease_id=lease.lease_id)),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "NOT_THE_WORKER",
                ),
                (
                    sched.Reserve(
                        lease_pb2.ReserveRequest(owner_id="sched", resources=common_pb2.Resources(cpu=1), price=1)
                    ),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "NOT_THE_WORKER",
                ),
                (
                    worker.Reserve(
                        lease_pb2.ReserveRequest(owner_id="sched", resources=common_pb2.Resources(cpu=99), price=1)
                    ),
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "DOES_NOT_FIT",
                ),
                (
                    worker.Reserve(lease_pb2.ReserveRequest(resources=common_pb2.Resources(cpu=1))),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "OWNER_ID_MISSING",
                ),
                (
                    stub_as(anonymous).Release(lease_pb2.ReleaseRequest(lease_id=lease.lease_id)),
                    grpc.StatusCode.UNAUTHENTICATED,
                    "CALLER_UNKNOWN",
                ),
            ]
            for call, code, reason in cases:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == code, (reason, err.value)
                assert error_reason(err.value) == reason
                assert err.value.details()
            # the owner's first Renew confirms the temporary lease; the worker's Confirm after it is no error
            renewed = (await sched.Renew(lease_pb2.RenewRequest(lease_id=lease.lease_id))).lease
            assert renewed.kind == lease_pb2.LEASE_KIND_RENEWABLE
            confirmed = (await worker.Confirm(lease_pb2.ConfirmRequest(lease_id=lease.lease_id))).lease
            assert confirmed == renewed


async def test_pruner_expires_unrenewed_leases_on_time(tmp_path: Path) -> None:
    config = worker_config(tmp_path, lease__renewable_seconds=1, lease__prune_interval_seconds=0.25)
    address = config.listen("lease")
    proc = spawn_service("lease", config, tmp_path)
    with running(proc):
        await wait_serving(address)
        async with open_channel(address, peer_id=WORKER) as w, open_channel(address, peer_id="observer") as obs:
            worker = stub_as(w)
            call = stub_as(obs).Watch(lease_pb2.WatchRequest())
            await call.initial_metadata()
            lease = (
                await worker.Reserve(
                    lease_pb2.ReserveRequest(owner_id="sched", resources=common_pb2.Resources(cpu=1), price=1)
                )
            ).lease
            lease = (await worker.Confirm(lease_pb2.ConfirmRequest(lease_id=lease.lease_id))).lease
            types = [(await asyncio.wait_for(call.read(), 5)).type for _ in range(2)]
            assert types == [lease_pb2.LEASE_EVENT_TYPE_RESERVED, lease_pb2.LEASE_EVENT_TYPE_CONFIRMED]
            expired = await asyncio.wait_for(call.read(), 10)  # nobody renews it
            late = time.time() - from_timestamp(lease.expires_at)
            assert expired.type == lease_pb2.LEASE_EVENT_TYPE_EXPIRED and expired.lease.lease_id == lease.lease_id
            assert -0.05 <= late < 3.0  # the pruner runs every 0.25 s; slack for a loaded machine
            cap = await worker.GetCapacity(lease_pb2.GetCapacityRequest())
            assert cap.free == cap.total
            call.cancel()
    print(f"\nunrenewed lease: EXPIRED event {late * 1000:.0f} ms after its expiry (prune interval 250 ms)")
