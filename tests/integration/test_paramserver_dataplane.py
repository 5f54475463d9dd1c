"""A real ParameterServer under mTLS: pushes and pulls take its TLS data port, tickets are bound to the caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tendril.certs.ops import init_ca, issue
from tendril.core import dataplane, tensorstream, tls
from tendril.core.channel import open_channel
from tendril.core.tls import TlsMaterial, load
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tests.procs import running, spawn_service, wait_serving, worker_config

pytestmark = pytest.mark.integration

WORKER = "worker-test"  # worker_config()'s worker id: the parameter server's certificate
SHAPES = {"h.0.w": (768, 1024), "h.0.b": (1024,)}  # 3 MiB of fp32


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pki")
    init_ca(base)
    for name in (WORKER, "trainer", "other"):
        issue(base, name)
    return base


def _material(ca: Path, name: str) -> TlsMaterial:
    material = load(tls.TlsSection(str(ca / "ca.pem"), str(ca / f"{name}.pem"), str(ca / f"{name}.key")))
    assert material is not None
    return material


@pytest.fixture
def as_trainer(ca: Path) -> Iterator[TlsMaterial]:
    """This process acts as the peer "trainer": its channels and data connections use that certificate."""
    section = tls.TlsSection(str(ca / "ca.pem"), str(ca / "trainer.pem"), str(ca / "trainer.key"))
    material = tls.configure(section)
    assert material is not None
    try:
        yield material
    finally:
        tls.configure(None)


def _write(path: Path, seed: int, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    save_file({n: (rng.standard_normal(s) * scale).astype(np.float32) for n, s in SHAPES.items()}, str(path))
    return path


async def test_mtls_pushes_and_pulls_take_the_data_port_and_tickets_are_bound_to_the_caller(
    tmp_path: Path, ca: Path, as_trainer: TlsMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {
        "tls__ca_file": ca / "ca.pem",
        "tls__cert_file": ca / f"{WORKER}.pem",
        "tls__key_file": ca / f"{WORKER}.key",
    }
    config = worker_config(tmp_path, **{k: str(v) for k, v in files.items()})
    proc = spawn_service("paramserver", config, tmp_path)
    connected: list[dataplane.Offer] = []
    connect = dataplane.connect

    def counting(host: str, offer: dataplane.Offer, material: TlsMaterial | None) -> Any:
        sock = connect(host, offer, material)
        connected.append(offer)
        return sock

    monkeypatch.setattr(dataplane, "connect", counting)
    with running(proc):
        address = config.listen("paramserver")
        await wait_serving(address, credentials=as_trainer.channel_credentials())
        theta, delta = _write(tmp_path / "theta.st", 0), _write(tmp_path / "delta.st", 1, 1e-2)
        async with open_channel(address, peer_id="trainer") as channel:
            stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
            await stub.OpenJob(paramserver_pb2.OpenJobRequest(run_id="run", expected_workers=1))
            assert await tensorstream.push_parameters(channel, theta, run_id="run", worker_id="trainer") == (True, 0)
            await tensorstream.push_update(
                channel, delta, run_id="run", round=0, worker_id="trainer", weight=1, codec="fp32"
            )
            await tensorstream.pull_update(channel, run_id="run", round=0, dest=tmp_path / "u.st", codec="fp32")
            assert await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta1.st") == 1
            # Every transfer went over the TLS data port (its certificate pinned by the call's offer).
            assert len(connected) == 4 and all(offer.cert_sha256 for offer in connected)
            update, theta0, theta1 = (load_file(str(tmp_path / n)) for n in ("u.st", "theta.st", "theta1.st"))
            for name in SHAPES:
                np.testing.assert_array_equal(theta1[name], theta0[name] + update[name])

            # Four connections per transfer under mTLS (parallel streams; loopback allowed here):
            # every one presents the caller's certificate and pins the port's.
            chooser = tensorstream.StreamChooser(cap=8, loopback=True)
            chooser.min_range = 256 * 1024
            for direction in ("push", "pull"):
                chooser.choices["127.0.0.1", direction] = tensorstream._Choice(streams=4, settled=True)
            monkeypatch.setattr(tensorstream, "CHOOSER", chooser)
            connected.clear()
            await tensorstream.push_update(
                channel, delta, run_id="run", round=1, worker_id="trainer", weight=1, codec="fp32"
            )
            await tensorstream.pull_update(channel, run_id="run", round=1, dest=tmp_path / "u1.st", codec="fp32")
            assert await tensorstream.pull_parameters(channel, run_id="run", dest=tmp_path / "theta2.st") == 2
            assert len(connected) == 12 and all(offer.cert_sha256 for offer in connected)
            update1, theta2 = load_file(str(tmp_path / "u1.st")), load_file(str(tmp_path / "theta2.st"))
            for name in SHAPES:
                np.testing.assert_array_equal(theta2[name], theta1[name] + update1[name])

            # A ticket offered to "trainer" is refused to a connection with another certificate of
            # the same CA, and stays good for its owner.
            pull = stub.PullParameters(paramserver_pb2.PullParametersRequest(run_id="run"), metadata=dataplane.REQUEST)
            try:
                offer = dataplane.Offer.from_metadata(await pull.initial_metadata())
                assert offer is not None and offer.cert_sha256 == _material(ca, WORKER).certificate_sha256()
                host = dataplane.channel_host(channel)
                assert host is not None
                with pytest.raises(dataplane.Refused):
                    await asyncio.to_thread(connect, host, offer, _material(ca, "other"))
                with pytest.raises(dataplane.Refused):  # no certificate at all
                    await asyncio.to_thread(connect, host, offer, None)
                sock = await asyncio.to_thread(connect, host, offer, as_trainer)
                sock.close()
            finally:
                pull.cancel()
    log = (tmp_path / "paramserver.log").read_text()
    assert "certificate 'other' is not the caller's 'trainer'" in log  # refused for its name, not by chance
