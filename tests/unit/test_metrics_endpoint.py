"""The supervisor's /metrics endpoint: serves every process's values, names its setting on a conflict."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from tendril.core import metrics
from tendril.core.ports import free_port
from tendril.supervisor.errors import SupervisorError
from tendril.supervisor.metrics_endpoint import MetricsEndpoint
from tendril.supervisor.ports import check_ports
from tendril.supervisor.specs import child_specs
from tests.procs import worker_config


def _figures() -> dict[str, metrics.ServiceFigures]:
    return {"lease": metrics.ServiceFigures(restarts=3, serving=False)}


def test_serves_metrics_over_http_until_stopped(tmp_path: Path) -> None:
    endpoint = MetricsEndpoint("127.0.0.1:0", tmp_path / "metrics", _figures)
    endpoint.start()
    try:
        assert endpoint.child_env() == {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
        with urllib.request.urlopen(f"http://{endpoint.address}/metrics", timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = reply.read().decode()
        assert 'tendril_service_restarts_total{service="lease"} 3.0' in text
        assert 'tendril_service_up{service="lease"} 0.0' in text
        endpoint.process_dead(12345)  # no files of that pid: nothing to do, no error
    finally:
        endpoint.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(endpoint.address.rsplit(":")[1])), 1):
        pass


def test_a_taken_port_is_one_clear_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        endpoint = MetricsEndpoint(address, tmp_path / "metrics", _figures, port_offset=10)
        with pytest.raises(SupervisorError) as err:
            endpoint.start()
        assert err.value.reason == "PORT_IN_USE"
        assert address in err.value.message
        assert "telemetry.metrics_listen" in err.value.message
        assert "TENDRIL_TELEMETRY_METRICS_LISTEN" in err.value.message
        assert "worker.port_offset 10" in err.value.message

        # The supervisor's port check finds it before any process starts.
        config = worker_config(tmp_path, telemetry__metrics_listen=address)
        with pytest.raises(SupervisorError) as checked:
            check_ports(config, child_specs(config))
        assert checked.value.reason == "PORT_IN_USE" and "telemetry.metrics_listen" in checked.value.message


def test_the_metrics_port_may_not_be_a_service_port_or_zero(tmp_path: Path) -> None:
    config = worker_config(tmp_path)
    config.telemetry.metrics_listen = config.lease.listen
    with pytest.raises(SupervisorError) as twice:
        check_ports(config, child_specs(config))
    assert twice.value.reason == "PORT_TWICE" and "telemetry.metrics_listen" in twice.value.message
    config.telemetry.metrics_listen = "127.0.0.1:0"
    with pytest.raises(SupervisorError) as zero:
        check_ports(config, child_specs(config))
    assert zero.value.reason == "PORT_ZERO" and "telemetry.metrics_listen" in zero.value.message
    config.telemetry.metrics_listen = "127.0.0.1:65530"
    config.worker.port_offset = 10
    with pytest.raises(SupervisorError) as shifted:
        check_ports(config, child_specs(config))
    assert shifted.value.reason == "PORT_OUT_OF_RANGE" and "worker.port_offset 10" in shifted.value.message
    config.worker.port_offset = 0
    config.telemetry.metrics_listen = f"127.0.0.1:{free_port()}"
    check_ports(config, child_specs(config))
