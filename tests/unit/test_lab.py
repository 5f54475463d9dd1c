"""The lab's pieces that need no namespace: settings checks, tbf's bucket, the link meter and
the delaying relay's forwarding (on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from tendril.core.config import load_config
from tendril.lab import relay
from tendril.lab.errors import LabError, LabReason
from tendril.lab.lab import PARAMSERVER, PARAMSERVER_EXECUTORS, Lab, LabSettings
from tendril.lab.measure import receive, send
from tendril.lab.net import NETNS_PREFIX, Network, tbf_burst
from tendril.scheduler.cluster import WorkerSpec, worker_toml


def test_tbf_bucket_holds_a_gso_packet_and_grows_with_the_rate() -> None:
    assert tbf_burst(10) == 64 * 1024
    assert tbf_burst(100) == 64 * 1024
    assert tbf_burst(1000) == 500_000  # 4 ms at 1 Gbit/s


@pytest.mark.parametrize(
    "hosts", [[], [("bad name", 100.0)], [("x" * 13, 100.0)], [("gateway", 0.0)], [("gateway", 200_000.0)]]
)
def test_a_network_refuses_hosts_it_cannot_build(hosts: list[tuple[str, float]]) -> None:
    with pytest.raises(LabError) as caught:
        Network(hosts)
    assert caught.value.reason == LabReason.BAD_SETTINGS


def test_every_name_of_a_lab_carries_its_id() -> None:
    one, two = Network([("worker-0", 100.0)]), Network([("worker-0", 100.0)])
    assert one.lab_id != two.lab_id
    assert one.bridge_netns == f"{NETNS_PREFIX}{one.lab_id}-br"
    assert one.control_link == f"tlab{one.lab_id}" and len(one.control_link) <= 15  # IFNAMSIZ


@pytest.mark.parametrize(
    "settings",
    [
        LabSettings(workers=0),
        LabSettings(latency_ms=-1),
        LabSettings(latency_ms=2000),
        LabSettings(paramserver_host=True, paramserver_rate_mbit=-1),
        LabSettings(paramserver_host=True, rate_mbit=50_000),  # 3 x 50 Gbit/s is past what a link may have
    ],
)
def test_a_lab_refuses_settings_it_cannot_build(tmp_path: Path, settings: LabSettings) -> None:
    with pytest.raises(LabError) as caught:
        Lab(tmp_path, settings)
    assert caught.value.reason == LabReason.BAD_SETTINGS


def test_the_parameter_server_host_carries_the_sum_of_the_workers_links(tmp_path: Path) -> None:
    rates = {name: rate for name, rate in Lab(tmp_path, LabSettings(workers=3, rate_mbit=100.0)).network._specs}
    assert PARAMSERVER not in rates
    own = Lab(tmp_path, LabSettings(workers=3, rate_mbit=100.0, paramserver_host=True)).network._specs
    assert dict(own)[PARAMSERVER] == 300.0 and dict(own)["worker-2"] == 100.0
    set_rate = LabSettings(workers=3, rate_mbit=100.0, paramserver_host=True, paramserver_rate_mbit=1000.0)
    assert dict(Lab(tmp_path, set_rate).network._specs)[PARAMSERVER] == 1000.0


def test_the_parameter_server_host_runs_only_the_parameter_server_and_eval_executors(tmp_path: Path) -> None:
    spec = WorkerSpec(PARAMSERVER, 0, "flexible", executor_classes=PARAMSERVER_EXECUTORS)
    (tmp_path / "worker.toml").write_text(worker_toml(spec, tmp_path, "127.0.0.1:1"))
    config = load_config(tmp_path / "worker.toml", env={})
    assert sorted(e.executor_class for e in config.executors) == ["aggregate", "eval"]
    assert config.executor("train", "diloco") is None
    # Without a choice a worker keeps every built-in executor (the file names none).
    assert "[[executors]]" not in worker_toml(WorkerSpec("worker-0", 0), tmp_path, "127.0.0.1:1")
    with pytest.raises(ValueError, match="no built-in executor of the classes"):
        worker_toml(WorkerSpec("w", 0, executor_classes=("nope",)), tmp_path, "127.0.0.1:1")


def test_a_lab_that_was_never_opened_closes_without_touching_anything(tmp_path: Path) -> None:
    lab = Lab(tmp_path, LabSettings(workers=1))
    assert lab.close() == []
    assert lab.network.destroy() == []


def test_the_meter_counts_the_rate_after_its_skip_and_times_round_trips() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result: dict[str, float] = {}
    thread = threading.Thread(target=lambda: result.update(receive(f"127.0.0.1:{port}", 10.0)))
    thread.start()
    for _ in range(500):
        try:
            sent = send(f"127.0.0.1:{port}", 0.4)
            break
        except ConnectionRefusedError:
            time.sleep(0.01)
    thread.join(10)
    assert result["bytes"] == sent["sent"] > 0
    # The rate counts from 0.3 s after the first byte to the last one.
    assert 0 < result["seconds"] <= 0.4 and result["mbit_per_s"] > 0
    assert sent["rtt_ms"] >= 0


def test_original_destination_reads_a_sockaddr_in() -> None:
    raw = struct.pack("!HH4s8x", socket.AF_INET, 51052, socket.inet_aton("198.18.3.4"))

    class Fake:
        def getsockopt(self, level: int, name: int, size: int) -> bytes:
            assert (level, name, size) == (socket.SOL_IP, relay.SO_ORIGINAL_DST, 16)
            return raw

    assert relay.original_destination(Fake()) == ("198.18.3.4", 51052)  # type: ignore[arg-type]


async def test_the_relay_holds_each_chunk_back_by_the_delay_and_passes_the_end_on() -> None:
    got: list[tuple[float, bytes]] = []
    done = asyncio.Event()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            got.append((time.monotonic(), data))
        writer.close()
        done.set()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        src_server_side: list[asyncio.StreamReader] = []
        ready = asyncio.Event()

        async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            src_server_side.append(reader)
            _, upstream = await asyncio.open_connection("127.0.0.1", port)
            ready.set()
            await relay._forward(reader, upstream, 0.1)
            upstream.close()

        entry = await asyncio.start_server(source, "127.0.0.1", 0)
        async with entry:
            _, client = await asyncio.open_connection("127.0.0.1", entry.sockets[0].getsockname()[1])
            await ready.wait()
            began = time.monotonic()
            client.write(b"hello")
            await client.drain()
            client.write_eof()
            await asyncio.wait_for(done.wait(), 5)
            client.close()
    assert b"".join(data for _, data in got) == b"hello"
    assert got[0][0] - began >= 0.09


def test_every_port_the_lab_listens_on_is_reserved_in_its_namespaces() -> None:
    from bench.wan import DP_PORT
    from tendril.core.config import WorkerConfig, split_address
    from tendril.lab import lab, streams
    from tendril.lab.net import LAB_PORTS

    low, high = (int(p) for p in LAB_PORTS.split("-"))
    defaults = WorkerConfig()
    ports = [lab.GATEWAY_PORT, lab.DATA_NODE_PORT, lab.SCHEDULER_PORT, lab.MEASURE_PORT, lab.RELAY_PORT]
    ports += [streams.PS_PORT, streams.DATA_PORT, DP_PORT]
    ports += [split_address(getattr(defaults, s).listen)[1] + lab.PORT_SHIFT for s in WorkerConfig.SERVICE_SECTIONS]
    ports.append(split_address(defaults.paramserver.data_listen)[1] + lab.PORT_SHIFT)
    assert all(low <= port <= high for port in ports), ports
