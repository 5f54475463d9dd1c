"""mTLS between real processes: identity comes from certificates, strangers are refused.

The worker's services (gateway, LeaseService, Arbiter, JobService) run as processes with a
``[tls]`` section; the test plays schedulers with their own certificates (same CA) and
forges the ``tendril-peer-id`` metadata to show that it no longer counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from tendril.certs.ops import init_ca, issue
from tendril.core.channel import open_channel
from tendril.core.config import WorkerConfig
from tendril.core.ports import free_port
from tendril.core.tls import TlsMaterial, load
from tendril_proto.arbiter.v1 import arbiter_pb2, arbiter_pb2_grpc
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tendril_sdk.errors import error_reason
from tests.procs import running, spawn, spawn_service, wait_serving, worker_config, write_config_json
from tests.scheduler_double import SchedulerDouble, accept

pytestmark = pytest.mark.integration

WORKER = "worker-test"  # worker_config()'s worker id
TERMINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}


@dataclasses.dataclass(frozen=True)
class Pki:
    """Certificates of one network (CA "a") plus a stranger's from another CA."""

    base: Path
    peers: dict[str, TlsMaterial]

    def __getitem__(self, name: str) -> TlsMaterial:
        return self.peers[name]

    def channel(self, address: str, name: str, *, claim: str | None = None) -> grpc.aio.Channel:
        """A channel presenting ``name``'s certificate and claiming ``claim`` (default: itself) in metadata."""
        return open_channel(address, peer_id=claim or name, credentials=self.peers[name].channel_credentials())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    init_ca(base / "a")
    init_ca(base / "b")
    peers: dict[str, TlsMaterial] = {}
    for name in (WORKER, "sched-a", "sched-b"):
        material = load(issue(base / "a", name).tls())
        assert material is not None
        peers[name] = material
    foreign = load(issue(base / "b", "sched-a").tls())
    assert foreign is not None
    # A stranger that trusts our CA (so it could verify our servers) but holds another CA's certificate.
    peers["stranger"] = dataclasses.replace(foreign, ca_pem=peers[WORKER].ca_pem)
    return Pki(base, peers)


def tls_config(tmp: Path, pki: Pki, name: str = WORKER, **overrides: Any) -> WorkerConfig:
    files = {"tls__ca_file": pki.base / "a" / "ca.pem"}
    files.update(tls__cert_file=pki.base / "a" / f"{name}.pem", tls__key_file=pki.base / "a" / f"{name}.key")
    return worker_config(tmp, **{k: str(v) for k, v in files.items()}, **overrides)


@contextlib.asynccontextmanager
async def services(tmp: Path, pki: Pki, config: WorkerConfig, *names: str) -> AsyncIterator[None]:
    procs = [spawn_service(name, config, tmp) for name in names]
    with running(*procs):
        creds = pki[WORKER].channel_credentials()
        addresses = [config.gateway.embedded_listen if n == "gateway" else config.listen(n) for n in names]
        await asyncio.gather(*(wait_serving(a, credentials=creds) for a in addresses))
        yield


async def denied(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    assert error_reason(err.value) == reason, err.value.details()


def struct(**values: Any) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


async def test_leases_and_jobs_answer_to_the_certificate_not_the_metadata(tmp_path: Path, pki: Pki) -> None:
    config = tls_config(tmp_path, pki)
    async with services(tmp_path, pki, config, "lease", "job"):
        leases, jobs = config.listen("lease"), config.listen("job")
        async with (
            pki.channel(leases, WORKER) as as_worker,
            pki.channel(leases, "sched-b") as b_leases,
            pki.channel(leases, "sched-a", claim="sched-b") as a_as_b,
            pki.channel(leases, "sched-a", claim=WORKER) as a_as_worker,
            pki.channel(jobs, "sched-b") as b_jobs,
            pki.channel(jobs, "sched-a", claim="sched-b") as a_jobs,
        ):
            worker_stub = lease_pb2_grpc.LeaseServiceStub(as_worker)
            reserve = lease_pb2.ReserveRequest(
                owner_id="sched-b", resources=common_pb2.Resources(cpu=1, memory_gib=1), price=100, ttl_seconds=10
            )
            # Reserving needs the worker's own certificate; claiming its id in metadata is not enough.
            await denied(
                lease_pb2_grpc.LeaseServiceStub(a_as_worker).Reserve(reserve, timeout=10),
                grpc.StatusCode.PERMISSION_DENIED,
                "NOT_THE_WORKER",
            )
            lease_id = (await worker_stub.Reserve(reserve, timeout=10)).lease.lease_id
            await worker_stub.Confirm(lease_pb2.ConfirmRequest(lease_id=lease_id), timeout=10)

            forger = lease_pb2_grpc.LeaseServiceStub(a_as_b)
            for call in (
                forger.Renew(lease_pb2.RenewRequest(lease_id=lease_id), timeout=10),
                forger.Release(lease_pb2.ReleaseRequest(lease_id=lease_id), timeout=10),
            ):
                await denied(call, grpc.StatusCode.PERMISSION_DENIED, "NOT_THE_OWNER")
            owner = lease_pb2_grpc.LeaseServiceStub(b_leases)
            renewed = (await owner.Renew(lease_pb2.RenewRequest(lease_id=lease_id), timeout=10)).lease
            assert renewed.owner_id == "sched-b" and renewed.kind == lease_pb2.LEASE_KIND_RENEWABLE

            dispatch = job_pb2.DispatchRequest(
                job_id="tls-1",
                lease_id=lease_id,
                executor=common_pb2.ExecutorRef(executor_class="example", name="echo"),
                config=struct(note="over mTLS"),
            )
            await denied(
                job_pb2_grpc.JobServiceStub(a_jobs).Dispatch(dispatch, timeout=30),
                grpc.StatusCode.PERMISSION_DENIED,
                "LEASE_NOT_OWNED",
            )
            # JobService checks the lease at the LeaseService over mTLS (as the worker), and the
            # executor reaches its bridge over the plaintext Unix socket: the job can succeed.
            owner_jobs = job_pb2_grpc.JobServiceStub(b_jobs)
            await owner_jobs.Dispatch(dispatch, timeout=30)
            deadline = time.monotonic() + 60
            while (
                job := (await owner_jobs.Get(job_pb2.GetRequest(job_id="tls-1"), timeout=10)).job
            ).state not in TERMINAL:
                assert time.monotonic() < deadline, f"job still {job_pb2.JobState.Name(job.state)}"
                await asyncio.sleep(0.1)
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.reason
            await denied(
                job_pb2_grpc.JobServiceStub(a_jobs).Cancel(job_pb2.CancelRequest(job_id="tls-1"), timeout=30),
                grpc.StatusCode.PERMISSION_DENIED,
                "NOT_JOB_OWNER",
            )
            released = (await owner.Release(lease_pb2.ReleaseRequest(lease_id=lease_id), timeout=10)).lease
            assert released.lease_id == lease_id


async def test_strangers_and_plaintext_clients_are_refused(tmp_path: Path, pki: Pki) -> None:
    config = tls_config(tmp_path, pki)
    async with services(tmp_path, pki, config, "lease"):
        address = config.listen("lease")
        capacity = lease_pb2.GetCapacityRequest()
        async with pki.channel(address, "sched-a") as ours:
            assert (await lease_pb2_grpc.LeaseServiceStub(ours).GetCapacity(capacity, timeout=10)).total.cpu == 4
        # REFERENCE §C: a rejected client certificate shows up as UNAVAILABLE.
        async with pki.channel(address, "stranger") as stranger:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await lease_pb2_grpc.LeaseServiceStub(stranger).GetCapacity(capacity, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        async with open_channel(address, peer_id=WORKER, credentials=grpc.local_channel_credentials()) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await lease_pb2_grpc.LeaseServiceStub(plain).GetCapacity(capacity, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await lease_pb2_grpc.LeaseServiceStub(plain).GetCapacity(capacity, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_service_refuses_to_start_with_another_peers_certificate(tmp_path: Path, pki: Pki) -> None:
    config = tls_config(tmp_path, pki, name="sched-a")
    path = write_config_json(config, tmp_path / "leases.json")
    done = subprocess.run(
        [sys.executable, "-m", "tendril.lease", "--config-json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "worker.id" in done.stderr and "tendril certs issue worker-test" in done.stderr


async def test_allocation_over_mtls_trusts_only_certificates(tmp_path: Path, pki: Pki) -> None:
    config = tls_config(tmp_path, pki, arbiter__allowed_schedulers="sched-b", arbiter__strategy="flexible")
    gateway, arbiter, leases = config.gateway.embedded_listen, config.listen("arbiter"), config.listen("lease")
    async with (
        services(tmp_path, pki, config, "gateway", "lease", "arbiter"),
        SchedulerDouble("sched-a", decide=accept(), tls=pki["sched-a"]) as sched_a,
        SchedulerDouble("sched-b", decide=accept(), tls=pki["sched-b"]) as sched_b,
    ):
        # sched-a is not allowed: in its own name it is dropped; it publishes a request in
        # sched-b's name (bid high, so it would be offered on first) hoping the offer comes to it.
        forged = sched_a.request(cpu=1, bid=500)
        forged.scheduler.id = "sched-b"
        honest = sched_a.request(cpu=1)
        await sched_a.publish(gateway, forged)
        await sched_a.publish(gateway, honest)
        legit = sched_b.request(cpu=1)
        await sched_b.publish(gateway, legit)

        offer = (await sched_b.wait_offers(1))[0]
        assert offer.request.request_id == legit.request_id
        lease = await sched_b.wait_renewable(leases, offer.request.lease_id)
        assert lease.owner_id == "sched-b"
        await sched_b.renew(leases, lease.lease_id)

        async with pki.channel(arbiter, WORKER) as channel:
            history = await arbiter_pb2_grpc.ArbiterServiceStub(channel).ListOffers(
                arbiter_pb2.ListOffersRequest(), timeout=10
            )
        states = {o.request_id: (arbiter_pb2.OfferState.Name(o.state), o.reason) for o in history.offers}
        assert forged.request_id not in states, "a request in another scheduler's name reached the arbiter"
        assert states[honest.request_id][0] == "OFFER_STATE_DROPPED"
        assert "allowed_schedulers" in states[honest.request_id][1]
        assert sched_a.offers == []

        # Solicit in another scheduler's name: the certificate gives the forger away.
        async with pki.channel(arbiter, "sched-a", claim="sched-b") as channel:
            await denied(
                arbiter_pb2_grpc.ArbiterServiceStub(channel).Solicit(
                    arbiter_pb2.SolicitRequest(request=sched_b.request(cpu=1)), timeout=10
                ),
                grpc.StatusCode.PERMISSION_DENIED,
                "NOT_THE_SCHEDULER",
            )
        await sched_b.release(leases, lease.lease_id)


async def test_standalone_gateway_serves_mtls_with_its_flags(tmp_path: Path, pki: Pki) -> None:
    issued = issue(pki.base / "a", "gateway-1", force=True)
    address = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "tendril.cli", "gateway", "run", "--listen", address, "--log-format", "json"]
    argv += ["--tls-ca", str(issued.ca_file), "--tls-cert", str(issued.paths.cert), "--tls-key", str(issued.paths.key)]
    proc = spawn(argv, log=tmp_path / "gw.log")
    with running(proc):
        await wait_serving(address, credentials=pki["sched-a"].channel_credentials())
        async with pki.channel(address, "sched-a") as channel:
            listed = await gateway_pb2_grpc.RegistryServiceStub(channel).List(gateway_pb2.ListRequest(), timeout=10)
            assert list(listed.records) == []
            # the certificate owns what it puts: no secret, and another certificate cannot rewrite or delete it
            reg = gateway_pb2_grpc.RegistryServiceStub(channel)
            record = gateway_pb2.Record(kind="worker", id="w", ttl_seconds=30)
            made = await reg.Put(gateway_pb2.PutRequest(record=record), timeout=10)
            assert made.secret == "" and made.record.owner == "sched-a"
            assert (await reg.Put(gateway_pb2.PutRequest(record=record), timeout=10)).record.version == 2
        async with pki.channel(address, "sched-b", claim="sched-a") as channel:
            other = gateway_pb2_grpc.RegistryServiceStub(channel)
            await denied(
                other.Put(gateway_pb2.PutRequest(record=record), timeout=10),
                grpc.StatusCode.PERMISSION_DENIED,
                "RECORD_NOT_OWNED",
            )
            await denied(
                other.Delete(gateway_pb2.DeleteRequest(kind="worker", id="w"), timeout=10),
                grpc.StatusCode.PERMISSION_DENIED,
                "RECORD_NOT_OWNED",
            )
        async with grpc.aio.insecure_channel(address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await gateway_pb2_grpc.RegistryServiceStub(plain).List(gateway_pb2.ListRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
