"""The pieces behind `tendril worker run` that need no process: ports, order, backoff, status."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tendril.supervisor.errors import SupervisorError
from tendril.supervisor.ports import check_ports
from tendril.supervisor.prepare import prepare
from tendril.supervisor.specs import child_specs, dial_address, stop_waves
from tendril.supervisor.statusfile import ChildStatus, SupervisorStatus, read_status, write_status
from tendril_sdk.retry import Backoff
from tests.procs import worker_config


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(0.5, 3.0, stable_after=30.0)
    assert [backoff.failed_after(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.failed_after(31.0) == 0.5  # it served long enough: start over
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_children_and_their_order(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    names = [s.name for s in child_specs(config)]
    assert names[0] == "gateway"
    assert set(names) == {"gateway", "lease", "job", "arbiter", "data_fetcher", "paramserver"}
    waves = [[s.name for s in wave] for wave in stop_waves(child_specs(config))]
    flat = [n for wave in waves for n in wave]
    # dependents stop first: job before lease/data_fetcher/paramserver, arbiter before gateway/lease
    assert flat.index("job") < min(flat.index("lease"), flat.index("data_fetcher"), flat.index("paramserver"))
    assert flat.index("arbiter") < min(flat.index("gateway"), flat.index("lease"))
    external = worker_config(tmp_path, gateway__address="gw.example:50050")
    specs = child_specs(external)
    assert "gateway" not in [s.name for s in specs]
    assert all("gateway" not in s.depends_on for s in specs)


def test_dial_address() -> None:
    assert dial_address("0.0.0.0:50051") == "127.0.0.1:50051"
    assert dial_address("10.1.2.3:7") == "10.1.2.3:7"
    assert dial_address("[::1]:7") == "[::1]:7"


def test_port_in_use_names_the_address_and_key(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = worker_config(tmp_path, job__listen=f"127.0.0.1:{port}")
        with pytest.raises(SupervisorError) as err:
            check_ports(config, child_specs(config))
    assert err.value.reason == "PORT_IN_USE"
    assert f"127.0.0.1:{port} is in use (config key job.listen / TENDRIL_JOB_LISTEN)" in err.value.message


def test_port_offset_is_named_and_duplicates_are_refused(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    config.lease.listen = config.job.listen
    with pytest.raises(SupervisorError, match="configured twice") as twice:
        check_ports(config, child_specs(config))
    assert "lease.listen" in twice.value.message and "job.listen" in twice.value.message
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for _ in range(5):
            config = worker_config(tmp_path, arbiter__listen=f"127.0.0.1:{port - 5}", worker__port_offset=5)
            with pytest.raises(SupervisorError) as shifted:
                check_ports(config, child_specs(config))
            # NOTE: the other services' ports are free ones shifted by 5, which another process
            # may hold at that moment (an ephemeral port): then that one is named; draw again.
            if f":{port} " in shifted.value.message:
                break
        assert "arbiter.listen / TENDRIL_ARBITER_LISTEN, plus worker.port_offset 5" in shifted.value.message


def test_prepare_resolves_writes_config_and_locks_the_state_dir(tmp_path: Path) -> None:
    config = worker_config(tmp_path, resources__cpu=-1)
    first = prepare(config)
    try:
        written = json.loads(first.config_json.read_text())
        assert written["worker"]["id"] == "worker-test"
        assert written["worker"]["state_dir"] == str(tmp_path / "state")
        assert written["resources"]["cpu"] >= 1  # detected, so every child sees the same totals
        assert (first.config_json.stat().st_mode & 0o777) == 0o600
        with pytest.raises(SupervisorError, match="in use by a running worker"):
            prepare(config)
    finally:
        first.lock.close()
    prepare(config).lock.close()  # free again once the first supervisor is gone


def test_status_file_round_trip(tmp_path: Path) -> None:
    status = SupervisorStatus(worker_id="w", supervisor_pid=1, state_dir=str(tmp_path))
    status.children["job"] = ChildStatus(name="job", module="m", address="a", log="l", pid=7, restarts=2)
    path = tmp_path / "run" / "status.json"
    write_status(path, status)
    data = read_status(path)
    assert data["children"]["job"]["restarts"] == 2 and data["children"]["job"]["pid"] == 7
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]
