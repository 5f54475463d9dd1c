"""`tendril worker run` with real service processes: start-up, registration, restarts, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tendril.cli.config_template import render
from tendril.cli.main import run as cli_run
from tendril.core import tls
from tendril.core.channel import open_channel
from tendril.core.config import ExecutorConfig, TlsSection, WorkerConfig
from tendril.core.ports import free_port
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tendril_proto.lease.v1 import lease_pb2, lease_pb2_grpc
from tests.procs import kill_group, pids_alive, running, spawn, wait_serving, worker_config

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "tendril.cli"]
SERVICES = {
    "arbiter": "tendril.arbiter.v1.ArbiterService",
    "lease": "tendril.lease.v1.LeaseService",
    "job": "tendril.job.v1.JobService",
    "data_fetcher": "tendril.data.v1.DataFetcherService",
    "paramserver": "tendril.paramserver.v1.ParameterServerService",
}
CHILD_OF_SECTION = {"lease": "lease", "job": "job", "paramserver": "paramserver"}
SLEEP_MARKER = "tendril-test-sleeping-executor"
SCHEDULER = "sched-test"


@dataclasses.dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    config: WorkerConfig
    log: Path

    @property
    def status_path(self) -> Path:
        return self.config.state_dir / "run" / "status.json"

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data

    def child(self, name: str) -> dict[str, Any]:
        child: dict[str, Any] = self.status().get("children", {}).get(name, {})
        return child

    def all_pids(self) -> list[int]:
        """The supervisor, its children and every process below them."""
        pids = [self.proc.pid]
        with contextlib.suppress(psutil.Error):
            pids += [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        return pids

    def config_json(self) -> str:
        return str(self.config.state_dir / "run" / "config.json")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _config(tmp_path: Path, **overrides: Any) -> WorkerConfig:
    config = worker_config(tmp_path, **overrides)
    sleeper = [sys.executable, "-c", f"import time  # {SLEEP_MARKER}\ntime.sleep(600)"]
    config.executors.append(ExecutorConfig("test", "sleep", sleeper))
    return config


@contextlib.contextmanager
def started(tmp_path: Path, **overrides: Any) -> Iterator[Worker]:
    """A supervised worker from a TOML file; everything it started is gone afterwards."""
    config = _config(tmp_path, **overrides)
    path = tmp_path / "worker.toml"
    path.write_text(render(config))
    log = tmp_path / "supervisor.out"
    proc = spawn([*CLI, "worker", "run", "--config", str(path)], log=log)
    worker = Worker(proc, config, log)
    seen: set[int] = set()
    try:
        with running(proc):
            yield worker
            seen.update(worker.all_pids())
    finally:
        # Safety net for a failed test: nothing it started may outlive it.
        for pid in pids_alive(sorted(seen)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _started_by(worker: Worker) -> list[int]:
    """Live processes anywhere on the host that run with this worker's config (its services)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and worker.config_json() in (proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


async def _serving(address: str, service: str, credentials: grpc.ChannelCredentials) -> bool:
    async with open_channel(address, credentials=credentials) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _wait_all_serving(
    worker: Worker, timeout: float = 90.0, credentials: grpc.ChannelCredentials | None = None
) -> float:
    """Seconds from the supervisor's process start until it saw every service SERVING (then
    each service and the gateway are checked from here too, over mTLS with ``credentials``)."""
    begun = psutil.Process(worker.proc.pid).create_time()
    try:
        await _until(lambda: worker.status().get("state") == "serving", timeout, "status.json says serving")
    except AssertionError:
        raise AssertionError(f"worker did not start:\n{worker.output()}") from None
    elapsed = float(worker.status()["serving_at"]) - begun
    config = worker.config
    targets = [(config.listen(s), name) for s, name in SERVICES.items()]
    if not config.gateway.address:
        targets.append((config.gateway.embedded_listen, "tendril.gateway.v1.RegistryService"))
    if credentials is None:
        await asyncio.gather(*(wait_serving(address, name, 30) for address, name in targets))
    else:
        assert all(await asyncio.gather(*(_serving(address, name, credentials) for address, name in targets)))
    return elapsed


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.05)


async def _renewable_lease(config: WorkerConfig) -> lease_pb2.Lease:
    """Reserve (as the worker itself, like its Arbiter) and confirm a lease owned by SCHEDULER."""
    async with open_channel(config.listen("lease"), peer_id=config.worker_id) as channel:
        stub = lease_pb2_grpc.LeaseServiceStub(channel)
        reserved = await stub.Reserve(
            lease_pb2.ReserveRequest(
                owner_id=SCHEDULER,
                resources=common_pb2.Resources(cpu=1, memory_gib=1, storage_gib=1),
                price=100,
                request_id="req-1",
                ttl_seconds=5,
            ),
            timeout=10,
        )
        confirmed = await stub.Confirm(lease_pb2.ConfirmRequest(lease_id=reserved.lease.lease_id), timeout=10)
    assert confirmed.lease.kind == lease_pb2.LEASE_KIND_RENEWABLE
    return confirmed.lease


async def _dispatch_sleeper(worker: Worker, lease: lease_pb2.Lease, job_id: str) -> list[int]:
    """Dispatch the sleeping test executor on ``lease``; the pids of the running executors."""
    config = worker.config
    async with open_channel(config.listen("job"), peer_id=SCHEDULER) as channel:
        jobs = job_pb2_grpc.JobServiceStub(channel)
        await jobs.Dispatch(
            job_pb2.DispatchRequest(
                job_id=job_id,
                lease_id=lease.lease_id,
                executor=common_pb2.ExecutorRef(executor_class="test", name="sleep"),
                config=struct_pb2.Struct(),
            ),
            timeout=30,
        )
    executors: list[int] = []

    def executor_running() -> bool:
        # NOTE: polled: right after the fork the child still shows the JobService's cmdline.
        executors.clear()
        for proc in psutil.Process(worker.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if SLEEP_MARKER in " ".join(proc.cmdline()):
                    executors.append(proc.pid)
        return len(executors) >= 1

    await _until(executor_running, 30, f"the sleeping executor of job {job_id} runs")
    return executors


async def test_worker_serves_registers_and_stops_every_process(tmp_path: Path) -> None:
    with started(tmp_path) as worker:
        startup = await _wait_all_serving(worker)
        print(f"\nstart-up (tendril worker run -> all five services + gateway SERVING): {startup:.2f}s")
        config = worker.config
        assert "worker worker-test serving:" in worker.output()

        # grpcurl, as the README shows it, lists the JobService through reflection.
        grpcurl = Path(sys.executable).parent / "grpcurl"
        listed = await asyncio.to_thread(
            subprocess.run,
            [str(grpcurl), "-plaintext", config.listen("job"), "list"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "tendril.job.v1.JobService" in listed.stdout and "grpc.health.v1.Health" in listed.stdout

        # The worker's record in the gateway registry.
        async with open_channel(config.gateway.embedded_listen, peer_id="tester") as channel:
            registry = gateway_pb2_grpc.RegistryServiceStub(channel)
            await _until(lambda: worker.status().get("registered") is True, 30, "worker registered")
            got = await registry.Get(gateway_pb2.GetRequest(kind="worker", id="worker-test"), timeout=10)
        record = common_pb2.WorkerRecord()
        assert got.record.payload.Unpack(record)
        assert got.record.ttl_seconds == config.gateway.registry_ttl_seconds
        assert record.worker_id == "worker-test"
        assert record.endpoints.job == config.advertised("job")
        assert record.endpoints.parameter_server == config.advertised("paramserver")
        assert (record.resources.cpu, record.resources.memory_gib, record.resources.gpu) == (4, 8, 0)
        assert ("test", "sleep") in {(e.executor_class, e.name) for e in record.executors}
        assert record.price == config.arbiter.price

        # A running executor that must not outlive the worker.
        lease = await _renewable_lease(config)
        executors = await _dispatch_sleeper(worker, lease, "sleepy")
        status = worker.status()
        children = [c["pid"] for c in status["children"].values()]
        assert len(children) == 6 and all(children)
        everything = [worker.proc.pid, *children, *executors]

        stop_started = time.monotonic()
        os.kill(worker.proc.pid, signal.SIGTERM)
        await _until(lambda: not pids_alive(everything), 12, f"all of {everything} gone")
        stop_seconds = time.monotonic() - stop_started
        print(f"stop (SIGTERM -> supervisor, 6 services and 1 executor gone): {stop_seconds:.2f}s")
        assert stop_seconds < 10.0
        assert await asyncio.to_thread(worker.proc.wait, 5) == 0, worker.output()
        assert worker.status()["state"] == "stopped"
        assert _started_by(worker) == []
        assert "worker worker-test: stopped" in worker.output()


async def test_killed_services_are_restarted_with_their_state(tmp_path: Path) -> None:
    with started(tmp_path, lease__renewable_seconds=120, gateway__registry_ttl_seconds=60) as worker:
        await _wait_all_serving(worker)
        config = worker.config
        lease = await _renewable_lease(config)
        # An executor runs while its JobService is killed: it must not be left behind.
        executors = await _dispatch_sleeper(worker, lease, "orphan")

        for name, section in (("lease", "lease"), ("job", "job")):
            old_pid = worker.child(name)["pid"]
            killed_at = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)
            await _until(
                lambda n=name, p=old_pid: worker.child(n).get("state") == "serving" and worker.child(n)["pid"] != p,
                30,
                f"{name} restarted",
            )
            await wait_serving(config.listen(section), SERVICES[section], 30)
            restart = time.monotonic() - killed_at
            print(f"\nrestart of {name} after SIGKILL (kill -> SERVING again): {restart:.2f}s")
            assert restart < 15.0
            child = worker.child(name)
            assert child["restarts"] == 1 and child["last_exit_code"] == -signal.SIGKILL

        # The lease reserved before the LeaseService was killed is still there, still renewable.
        async with open_channel(config.listen("lease"), peer_id=SCHEDULER) as channel:
            stub = lease_pb2_grpc.LeaseServiceStub(channel)
            got = await stub.Get(lease_pb2.GetRequest(lease_id=lease.lease_id), timeout=10)
            assert got.lease.owner_id == SCHEDULER and got.lease.kind == lease_pb2.LEASE_KIND_RENEWABLE
            renewed = await stub.Renew(lease_pb2.RenewRequest(lease_id=lease.lease_id), timeout=10)
            assert renewed.lease.expires_at.seconds >= got.lease.expires_at.seconds

        # A restarted embedded gateway forgot every record: the supervisor puts the worker back at once.
        old_gateway = worker.child("gateway")["pid"]
        os.kill(old_gateway, signal.SIGKILL)
        await _until(lambda: worker.child("gateway").get("pid") not in (None, old_gateway), 30, "gateway restarted")
        await wait_serving(config.gateway.embedded_listen, "tendril.gateway.v1.RegistryService", 30)
        async with open_channel(config.gateway.embedded_listen, peer_id="tester") as channel:
            registry = gateway_pb2_grpc.RegistryServiceStub(channel)
            deadline = time.monotonic() + config.gateway.registry_ttl_seconds / 3
            while not (await registry.List(gateway_pb2.ListRequest(kind="worker"), timeout=10)).records:
                assert time.monotonic() < deadline, "worker record not put back after the gateway restart"
                await asyncio.sleep(0.05)

        everything = sorted({*worker.all_pids(), *executors})
        stop_started = time.monotonic()
        kill_group(worker.proc, signal.SIGTERM)
        assert worker.proc.returncode == 0, worker.output()
        await _until(lambda: not pids_alive(everything), 10, f"all of {everything} gone")
        assert time.monotonic() - stop_started < 10.0
        assert "lease was killed by SIGKILL; restarting in 0.5s" in worker.output()


async def test_a_service_that_never_serves_stops_the_worker(tmp_path: Path) -> None:
    # NOTE: a start timeout no Python process can meet makes the failure deterministic.
    with started(tmp_path, supervisor__start_timeout_seconds=0.01) as worker:
        code = await asyncio.to_thread(worker.proc.wait, 60)
        seen = worker.status()
        assert code == 1, worker.output()
        assert seen["state"] == "failed"
        assert "was not SERVING at" in worker.output() and "stopping the worker" in worker.output()
        assert "Last lines of" in worker.output()
        assert _started_by(worker) == []
        assert all(c["state"] in ("stopped", "pending") for c in seen["children"].values())


async def test_worker_joins_an_external_gateway_and_unregisters_on_stop(tmp_path: Path) -> None:
    gateway_address = f"127.0.0.1:{free_port()}"
    gateway = spawn([*CLI, "gateway", "run", "--listen", gateway_address], log=tmp_path / "gateway.log")
    with running(gateway):
        await wait_serving(gateway_address, "tendril.gateway.v1.RegistryService", 60)
        with started(tmp_path, gateway__address=gateway_address) as worker:
            await _wait_all_serving(worker)
            assert "gateway" not in worker.status()["children"]  # no embedded gateway
            async with open_channel(gateway_address, peer_id="tester") as channel:
                registry = gateway_pb2_grpc.RegistryServiceStub(channel)
                await _until(lambda: worker.status().get("registered") is True, 30, "worker registered")
                listed = await registry.List(gateway_pb2.ListRequest(kind="worker"), timeout=10)
                assert [r.id for r in listed.records] == ["worker-test"]
                kill_group(worker.proc, signal.SIGTERM)
                assert worker.proc.returncode == 0, worker.output()
                # Deleted on the clean stop, not left to expire with its TTL.
                listed = await registry.List(gateway_pb2.ListRequest(kind="worker"), timeout=10)
                assert list(listed.records) == []
            assert _started_by(worker) == []


async def test_worker_under_mtls_serves_registers_and_refuses_plaintext(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert cli_run(["certs", "init", "--dir", str(certs)]) == 0
    for name in ("worker-test", "tester"):
        assert cli_run(["certs", "issue", name, "--dir", str(certs)]) == 0
    files = {"tls__ca_file": certs / "ca.pem", "tls__cert_file": certs / "worker-test.pem"}
    files["tls__key_file"] = certs / "worker-test.key"
    tester = tls.load(TlsSection(str(certs / "ca.pem"), str(certs / "tester.pem"), str(certs / "tester.key")))
    assert tester is not None
    credentials = tester.channel_credentials()
    with started(tmp_path, **{k: str(v) for k, v in files.items()}) as worker:
        await _wait_all_serving(worker, credentials=credentials)
        config = worker.config
        async with open_channel(config.gateway.embedded_listen, credentials=credentials) as channel:
            await _until(lambda: worker.status().get("registered") is True, 30, "worker registered over mTLS")
            got = await gateway_pb2_grpc.RegistryServiceStub(channel).Get(
                gateway_pb2.GetRequest(kind="worker", id="worker-test"), timeout=10
            )
            assert got.record.id == "worker-test"
        async with grpc.aio.insecure_channel(config.listen("job")) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        kill_group(worker.proc, signal.SIGTERM)
        assert worker.proc.returncode == 0, worker.output()
        assert _started_by(worker) == []
