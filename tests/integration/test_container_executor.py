"""Container executors with real podman through real LeaseService and JobService processes.

The example executor (executors/tendril_example) runs in a podman container on the host's own
files (``rootfs = "/"``, an overlay: no image, no registry), its work dir mounted; a tiny probe
executor checks that the container has no network; cancel, and a JobService crash followed by
re-adoption, and the kill of an executor that ignores SIGTERM leave no container behind
(``podman ps -a``). Skipped where podman is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tendril.core.config import ContainerConfig, ExecutorConfig
from tendril.job.container import LABEL_JOB, container_name
from tendril_proto.job.v1 import job_pb2, job_pb2_grpc
from tests.integration.clients_env import started_worker
from tests.integration.test_jobs_service import Worker, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (apt-get install podman runc)"),
]

# NOTE: Debian's default OCI runtime, crun, refuses hosts whose cgroups are in hybrid mode (v1
# controllers plus a v2 mount with a controller in it), as on the CI machines; runc runs there.
RUNTIME_ARGS = ["--runtime", "runc"] if shutil.which("runc") else []
BOXED = ContainerConfig(runtime="podman", rootfs="/", runtime_args=RUNTIME_ARGS)

# Tries a TCP connection to the test's listener on the host's loopback, lists the network
# interfaces it sees and reads its cgroup's memory and CPU limits; writes it all to net.json.
NET_PROBE = """\
import json, os, socket, sys
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    connected = "connected"
except OSError as exc:
    connected = f"{type(exc).__name__}: {exc}"
def first(*paths):
    for path in paths:
        if os.path.exists(path):
            return open(path).read().strip()
    return None
limits = {
    "memory": first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
    "cpu": first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"),
}
with open(os.path.join(os.environ["WORK_DIR"], "net.json"), "w") as f:
    interfaces = [name for _, name in socket.if_nameindex()]
    json.dump({"connect": connected, "interfaces": interfaces, "limits": limits}, f)
"""


def _containers(job_id: str) -> list[str]:
    """Names of the containers of ``job_id`` that podman knows (running or not)."""
    done = subprocess.run(
        ["podman", *RUNTIME_ARGS, "ps", "-a", "--filter", f"label={LABEL_JOB}={job_id}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[tuple[Worker, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    example = [sys.executable, "-m", "tendril_example", "--socket", "{SOCKET_PATH}"]
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('up', 'w'); time.sleep(120)"
    executors = [
        ExecutorConfig("example", "boxed", example, container=BOXED),
        ExecutorConfig("test", "stubborn", [sys.executable, "-c", stubborn], container=BOXED),
        ExecutorConfig("test", "netprobe", [sys.executable, "-c", NET_PROBE, str(port)], container=BOXED),
    ]
    # NOTE: nobody renews the test's lease: it must outlive the test on a slow machine.
    try:
        async with started_worker(
            tmp_path, executors, job__kill_grace_seconds=3, job__keep_work_dirs=True, lease__renewable_seconds=600
        ) as started:
            yield started, listener
    finally:
        listener.close()


async def test_example_executor_runs_in_a_container_without_network(worker: tuple[Worker, socket.socket]) -> None:
    w, _ = worker
    lease_id = await w.lease()
    await w.dispatch("box-1", lease_id, executor_name="boxed", answer=42)
    ended = await w.wait_end("box-1", timeout=90)
    assert ended.state == job_pb2.JOB_STATE_SUCCEEDED and ended.exit_code == 0, (ended.reason, await w.logs("box-1"))
    result_path = w.work_dir("box-1") / "result.json"
    result = json.loads(result_path.read_text())
    assert result["job_id"] == "box-1" and result["config"] == {"answer": 42}, "it reached its bridge from inside"
    assert result_path.stat().st_uid == os.getuid(), "what it wrote belongs to the worker's user"
    assert "[example] done, exiting with code 0" in await w.logs("box-1")
    assert _containers("box-1") == [], "its container was removed"

    await w.dispatch("net-1", lease_id, executor_class="test", executor_name="netprobe")
    ended = await w.wait_end("net-1", timeout=90)
    assert ended.state == job_pb2.JOB_STATE_SUCCEEDED, (ended.reason, await w.logs("net-1"))
    net = json.loads((w.work_dir("net-1") / "net.json").read_text())
    assert net["connect"] != "connected" and "refused" in net["connect"].lower(), net
    assert net["interfaces"] == ["lo"], "no network but its own loopback"
    # The lease holds 1 CPU and 1 GiB (Worker.lease): --cpus 1 --memory 1024m.
    assert net["limits"]["memory"] == str(2**30), net
    assert net["limits"]["cpu"].split()[0] == "100000", net


async def test_cancel_and_a_job_service_crash_leave_no_container(worker: tuple[Worker, socket.socket]) -> None:
    w, _ = worker
    lease_id = await w.lease()
    await w.dispatch("box-c", lease_id, executor_name="boxed", sleep_seconds=120)
    await wait_for(lambda: (w.work_dir("box-c") / "result.json").exists(), what="box-c to start", timeout=90)
    assert _containers("box-c") == [container_name("box-c", w.work_dir("box-c"))]
    began = time.monotonic()
    async with w.channel("job") as ch:
        reply = await job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="box-c", reason="stop"))
    assert reply.job.state == job_pb2.JOB_STATE_CANCELLED
    assert reply.job.exit_code == 143, "SIGTERM reached the executor inside (it exits 143 on it)"
    assert time.monotonic() - began < 30
    assert "SIGTERM: stopping now" in await w.logs("box-c")
    assert _containers("box-c") == []

    # One that ignores SIGTERM: killed after the grace period, its container removed all the same.
    await w.dispatch("box-k", lease_id, executor_class="test", executor_name="stubborn")
    await wait_for(lambda: (w.work_dir("box-k") / "up").exists(), what="box-k to start", timeout=90)
    async with w.channel("job") as ch:
        reply = await job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="box-k", reason="stop"))
    assert reply.job.state == job_pb2.JOB_STATE_CANCELLED and reply.job.exit_code == -signal.SIGKILL
    assert _containers("box-k") == []

    # The JobService dies; its successor re-adopts the job through its shim, and its cancel
    # still ends with the container gone.
    await w.dispatch("box-r", lease_id, executor_name="boxed", sleep_seconds=120)
    await wait_for(lambda: (w.work_dir("box-r") / "result.json").exists(), what="box-r to start", timeout=90)
    await w.kill_jobs()
    await w.start_jobs()
    assert _containers("box-r") == [container_name("box-r", w.work_dir("box-r"))], "it kept running"
    async with w.channel("job") as ch:
        reply = await job_pb2_grpc.JobServiceStub(ch).Cancel(job_pb2.CancelRequest(job_id="box-r", reason="stop"))
    assert reply.job.state == job_pb2.JOB_STATE_CANCELLED and reply.job.exit_code == 143
    assert _containers("box-r") == []
