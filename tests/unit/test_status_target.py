"""Where `tendril status` / `tendril jobs` look for a worker's services (no processes started)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest

from tendril.cli.status_collect import job_row, lease_row, rpc_error_text, service_health
from tendril.cli.worker_target import HEALTH_NAMES, ServiceTarget, WorkerTarget, remote_host, resolve
from tendril.core.config import WorkerConfig, load_config
from tendril.core.errors import ConfigError
from tendril.core.timeutil import to_timestamp
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.data.v1 import data_pb2
from tendril_proto.gateway.v1 import gateway_pb2
from tendril_proto.job.v1 import job_pb2
from tendril_proto.lease.v1 import lease_pb2
from tendril_proto.paramserver.v1 import paramserver_pb2


def _config(tmp_path: Path, **values: object) -> WorkerConfig:
    return load_config(None, env={}, overrides={"worker.id": "w1", "worker.state_dir": str(tmp_path), **values})


def test_health_names_are_the_services_of_the_protos() -> None:
    assert {
        "gateway": gateway_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
        "arbiter": arbiter_pb2.DESCRIPTOR.services_by_name["ArbiterService"].full_name,
        "lease": lease_pb2.DESCRIPTOR.services_by_name["LeaseService"].full_name,
        "job": job_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
        "data_fetcher": data_pb2.DESCRIPTOR.services_by_name["DataFetcherService"].full_name,
        "paramserver": paramserver_pb2.DESCRIPTOR.services_by_name["ParameterServerService"].full_name,
    } == HEALTH_NAMES


def test_local_defaults_with_port_offset_and_no_status_file(tmp_path: Path) -> None:
    target = resolve(_config(tmp_path, **{"worker.port_offset": 100}))
    assert not target.remote and target.supervisor is None
    assert {s.name: s.address for s in target.services} == {
        "gateway": "127.0.0.1:50050",  # the embedded gateway is not shifted
        "lease": "127.0.0.1:50152",
        "data_fetcher": "127.0.0.1:50154",
        "paramserver": "127.0.0.1:50155",
        "job": "127.0.0.1:50153",
        "arbiter": "127.0.0.1:50151",
    }
    assert "no supervisor status at" in target.note and str(tmp_path) in target.note


def test_external_gateway_is_no_child(tmp_path: Path) -> None:
    target = resolve(_config(tmp_path, **{"gateway.address": "gw:50050"}))
    assert "gateway" not in {s.name for s in target.services}


def _write_status(tmp_path: Path, pid: int) -> None:
    run = tmp_path / "run"
    run.mkdir()
    children = {
        "lease": {"address": "0.0.0.0:6002", "restarts": 1, "pid": 5, "state": "serving"},
        "job": {"address": "127.0.0.1:6003", "restarts": 0, "pid": 6, "state": "serving"},
    }
    status = {"worker_id": "w-running", "supervisor_pid": pid, "state": "serving", "children": children}
    (run / "status.json").write_text(json.dumps(status))


def test_a_live_supervisor_tells_the_real_addresses(tmp_path: Path) -> None:
    _write_status(tmp_path, os.getpid())
    target = resolve(_config(tmp_path))
    assert target.supervisor_alive and target.note == "" and target.worker_id == "w-running"
    assert [(s.name, s.address, s.health_name) for s in target.services] == [
        ("lease", "127.0.0.1:6002", "tendril.lease.v1.LeaseService"),  # 0.0.0.0 is dialled on 127.0.0.1
        ("job", "127.0.0.1:6003", "tendril.job.v1.JobService"),
    ]


def test_a_stale_status_file_is_not_trusted(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above the default pid_max of 4194304: never a live process
    _write_status(tmp_path, dead)
    target = resolve(_config(tmp_path))
    assert not target.supervisor_alive and f"supervisor pid {dead} is not running" in target.note
    assert target.address("job") == "127.0.0.1:50053"  # from the config, not from the stale file


def test_remote_uses_the_config_ports_on_that_host(tmp_path: Path) -> None:
    _write_status(tmp_path, os.getpid())  # a local status file is ignored for a remote worker
    target = resolve(_config(tmp_path, **{"worker.port_offset": 10}), "node7")
    assert target.remote and target.supervisor is None and "restarts are unknown" in target.note
    assert target.address("job") == "node7:50063" and target.address("gateway") == "node7:50050"
    assert resolve(_config(tmp_path), "::1").address("lease") == "[::1]:50052"


@pytest.mark.parametrize("bad", ["node7:50053", "", "a/b", "grpc://x"])
def test_remote_host_must_be_a_host(bad: str) -> None:
    with pytest.raises(ConfigError, match="give a host name or IP address"):
        remote_host(bad)


def test_rows_from_messages() -> None:
    lease = lease_pb2.Lease(
        lease_id="l1", owner_id="s", kind=lease_pb2.LEASE_KIND_TEMPORARY, expires_at=to_timestamp(1000.5)
    )
    row = lease_row(lease, now=1000.0)
    assert (row.kind, row.expires_in_seconds) == ("temporary", 0.5)
    job = job_pb2.Job(job_id="j", state=job_pb2.JOB_STATE_CANCELLED, exit_code=-15, created_at=to_timestamp(990.0))
    job.progress.update({"round": 2, "loss": 1.5})
    jrow = job_row(job, now=1000.0)
    assert (jrow.state, jrow.exit_code, jrow.age_seconds) == ("cancelled", -15, 10.0)
    assert list(jrow.progress) == ["loss", "round"]
    running = job_row(job_pb2.Job(job_id="r", state=job_pb2.JOB_STATE_RUNNING), now=5.0)
    assert running.exit_code is None and running.age_seconds == 0.0


class _Refused(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_error_text_is_one_short_line() -> None:
    refused = _Refused(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote "
        "host: Connection refused",
    )
    assert rpc_error_text(refused).startswith("UNAVAILABLE: connection refused")
    assert rpc_error_text(_Refused(grpc.StatusCode.NOT_FOUND, "job x\nnot found")) == "NOT_FOUND: job x not found"


def test_a_jobservice_that_cannot_run_jobs_says_why_in_status() -> None:
    job = ServiceTarget("job", "127.0.0.1:1", "tendril.job.v1.JobService")
    child = {"state": "serving", "pid": 7, "restarts": 0, "last_exit_code": None, "ready": False}
    target = WorkerTarget("w", False, [job], None, {"children": {"job": child}}, True, "")
    row = service_health(job, "NOT_SERVING", "", target)
    assert row.error.startswith("cannot run jobs: state or work dir full or read-only")
    child["ready"] = True
    assert service_health(job, "SERVING", "", target).error == ""
