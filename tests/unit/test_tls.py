"""mTLS: the [tls] section, file checks, the process-wide default, identity on in-process servers."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2

from tendril.arbiter.bus import BusFollower
from tendril.certs.ops import Issued, init_ca, issue
from tendril.cli.main import run
from tendril.core import tls
from tendril.core.channel import open_channel
from tendril.core.config import TlsSection, load_config
from tendril.core.errors import ConfigError
from tendril.core.identity import caller_id, certificate_id
from tendril.core.server import Binding, ServiceServer
from tendril.gateway.service import GatewayService
from tendril_proto.arbiter.v1 import arbiter_pb2
from tendril_proto.common.v1 import common_pb2
from tendril_proto.gateway.v1 import gateway_pb2, gateway_pb2_grpc

ECHO = "/test.Echo/Who"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    """CA "a" with worker-a and sched-a; CA "b" (another network) with its own sched-a."""
    base = tmp_path_factory.mktemp("pki")
    init_ca(base / "a")
    init_ca(base / "b")
    return {
        "worker-a": issue(base / "a", "worker-a"),
        "sched-a": issue(base / "a", "sched-a"),
        "foreign": issue(base / "b", "sched-a"),
    }


@pytest.fixture(autouse=True)
def plaintext_after() -> Iterator[None]:
    yield
    tls.configure(None)


def overrides(section: TlsSection) -> dict[str, object]:
    return {f"tls.{k}": getattr(section, k) for k in (*TlsSection.FILE_KEYS, "require_client_cert")}


# -- the [tls] config section ---------------------------------------------------------------------


def test_tls_section_needs_all_three_existing_files(pki: dict[str, Issued], tmp_path: Path) -> None:
    section = pki["worker-a"].tls()
    assert not load_config(None, env={}).tls.enabled
    config = load_config(None, env={}, overrides=overrides(section))
    assert config.tls == section and config.tls.require_client_cert

    with pytest.raises(ConfigError) as err:
        load_config(None, env={}, overrides={"tls.ca_file": section.ca_file})
    assert err.value.key == "tls.cert_file" and "all three" in err.value.message
    with pytest.raises(ConfigError) as err:
        load_config(None, env={}, overrides={**overrides(section), "tls.key_file": str(tmp_path / "nope.key")})
    assert err.value.key == "tls.key_file" and "no such file" in err.value.message
    env = {f"TENDRIL_TLS_{k.upper()}": getattr(section, k) for k in TlsSection.FILE_KEYS}
    from_env = load_config(None, env={**env, "TENDRIL_TLS_REQUIRE_CLIENT_CERT": "false"})
    assert from_env.tls.cert_file == section.cert_file and not from_env.tls.require_client_cert


def test_load_checks_that_the_files_belong_together(pki: dict[str, Issued], tmp_path: Path) -> None:
    good = pki["worker-a"].tls()
    material = tls.load(good)
    assert material is not None and material.name == "worker-a" and material.require_client_cert
    assert tls.load(TlsSection()) is None

    wrong_key = TlsSection(good.ca_file, good.cert_file, pki["sched-a"].tls().key_file)
    with pytest.raises(ConfigError) as err:
        tls.load(wrong_key)
    assert err.value.key == "tls.key_file" and "not the key" in err.value.message

    other_ca = TlsSection(good.ca_file, pki["foreign"].tls().cert_file, pki["foreign"].tls().key_file)
    with pytest.raises(ConfigError) as err:
        tls.load(other_ca)
    assert err.value.key == "tls.cert_file" and "not issued by the CA" in err.value.message

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError) as err:
        tls.load(TlsSection(str(garbage), good.cert_file, good.key_file))
    assert err.value.key == "tls.ca_file"
    with pytest.raises(ConfigError) as err:
        tls.load(TlsSection(good.ca_file, good.cert_file, str(garbage)))
    assert err.value.key == "tls.key_file"


def test_configure_insists_the_certificate_names_this_peer(pki: dict[str, Issued]) -> None:
    with pytest.raises(ConfigError) as err:
        tls.configure(pki["worker-a"].tls(), expected_name="worker-b")
    assert "worker.id" in err.value.message and "tendril certs issue worker-b" in err.value.message
    assert tls.active() is None, "a refused setup must not half-apply"
    assert tls.configure(pki["worker-a"].tls(), expected_name="worker-a") is not None
    assert tls.mutual()


def test_default_credentials_are_tls_for_tcp_and_plaintext_for_unix_sockets(pki: dict[str, Issued]) -> None:
    assert tls.default_channel_credentials("127.0.0.1:1") is None
    assert tls.default_server_credentials("127.0.0.1:0") is None
    tls.configure(pki["worker-a"].tls())
    assert isinstance(tls.default_channel_credentials("127.0.0.1:1"), grpc.ChannelCredentials)
    assert isinstance(tls.default_server_credentials("0.0.0.0:0"), grpc.ServerCredentials)
    assert tls.default_channel_credentials("unix:/run/x/bridge.sock") is None
    assert tls.default_server_credentials("unix:/run/x/bridge.sock") is None
    tls.configure(TlsSection())
    assert tls.active() is None and tls.default_channel_credentials("127.0.0.1:1") is None


# -- real servers and channels in this process ----------------------------------------------------


async def _who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return f"{caller_id(context)}|{certificate_id(context)}".encode()


def echo_server(listen: str) -> ServiceServer:
    def add(servicer: object, server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler("test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(_who)})
        server.add_generic_rpc_handlers([handler])

    return ServiceServer(listen, [Binding("test.Echo", add, None)], config_key="test.listen")


async def who(address: str, *, peer_id: str, credentials: grpc.ChannelCredentials | None = None) -> tuple[str, str]:
    async with open_channel(address, peer_id=peer_id, credentials=credentials) as channel:
        reply: bytes = await channel.unary_unary(ECHO)(b"", timeout=10)
    caller, _, cert = reply.decode().partition("|")
    return caller, cert


async def test_under_mtls_the_caller_is_the_certificate_not_the_metadata(pki: dict[str, Issued]) -> None:
    tls.configure(pki["worker-a"].tls())
    server = echo_server("127.0.0.1:0")
    await server.start()
    try:
        # The process default (worker-a's certificate) ...
        assert await who(server.address, peer_id="worker-a") == ("worker-a", "worker-a")
        # ... and another peer's certificate whose metadata claims to be worker-a.
        sched = tls.load(pki["sched-a"].tls())
        assert sched is not None
        forged = await who(server.address, peer_id="worker-a", credentials=sched.channel_credentials())
        assert forged == ("sched-a", "sched-a")
        # localhost is a SAN too: host name verification passes for it.
        port = server.address.rpartition(":")[2]
        assert await who(f"localhost:{port}", peer_id="x") == ("worker-a", "worker-a")
    finally:
        await server.stop(0)


async def test_a_server_on_every_interface_is_dialled_at_its_listen_address(pki: dict[str, Issued]) -> None:
    tls.configure(pki["worker-a"].tls())
    server = echo_server("0.0.0.0:0")
    await server.start()
    try:
        # What a worker's services do: dial the listen address; no certificate names 0.0.0.0.
        assert await who(f"0.0.0.0:{server.port}", peer_id="x") == ("worker-a", "worker-a")
    finally:
        await server.stop(0)
    assert tls.channel_options("[::]:1") == tls.channel_options("0.0.0.0:1") != []
    assert tls.channel_options("127.0.0.1:1") == tls.channel_options("example.org") == []


async def test_other_ca_and_plaintext_clients_are_refused(pki: dict[str, Issued]) -> None:
    tls.configure(pki["worker-a"].tls())
    server = echo_server("127.0.0.1:0")
    await server.start()
    try:
        ours, foreign = tls.load(pki["worker-a"].tls()), tls.load(pki["foreign"].tls())
        assert ours is not None and foreign is not None
        # Trusts the server's CA, but presents a certificate of another CA.
        creds = dataclasses.replace(foreign, ca_pem=ours.ca_pem).channel_credentials()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await who(server.address, peer_id="sched-a", credentials=creds)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async with grpc.aio.insecure_channel(server.address) as channel:
                await channel.unary_unary(ECHO)(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_without_client_certificates_callers_name_themselves(pki: dict[str, Issued]) -> None:
    section = pki["worker-a"].tls()
    section.require_client_cert = False
    tls.configure(section)
    assert not tls.mutual()
    server = echo_server("127.0.0.1:0")
    await server.start()
    try:
        material = tls.active()
        assert material is not None
        ca_only = grpc.ssl_channel_credentials(root_certificates=material.ca_pem)
        assert await who(server.address, peer_id="anyone", credentials=ca_only) == ("anyone", "")
    finally:
        await server.stop(0)


async def test_unix_socket_servers_stay_plaintext_under_tls(pki: dict[str, Issued], tmp_path: Path) -> None:
    tls.configure(pki["worker-a"].tls())
    address = f"unix:{tmp_path / 'bridge.sock'}"
    server = echo_server(address)
    await server.start()
    try:
        assert await who(address, peer_id="executor") == ("executor", "")
    finally:
        await server.stop(0)


async def test_plaintext_identity_comes_from_metadata() -> None:
    server = echo_server("127.0.0.1:0")
    await server.start()
    try:
        assert await who(server.address, peer_id="sched-z") == ("sched-z", "")
    finally:
        await server.stop(0)


# -- children and standalone commands -------------------------------------------------------------


def clear_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TENDRIL_TLS_* now, and none left behind by what the test exports (setenv records the old state)."""
    for key in tls.environment(TlsSection()):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


def test_environment_reproduces_the_setup_in_a_child(pki: dict[str, Issued], monkeypatch: pytest.MonkeyPatch) -> None:
    section = pki["worker-a"].tls()
    env = tls.environment(section)
    assert env["TENDRIL_TLS_CERT_FILE"] == section.cert_file
    material = tls.configure_from_env(env, expected_name="worker-a")
    assert material is not None and material.name == "worker-a"
    assert tls.configure_from_env({}) is None and tls.active() is None
    with pytest.raises(ConfigError) as err:
        tls.configure_from_env({"TENDRIL_TLS_CA_FILE": section.ca_file})
    assert err.value.key == "TENDRIL_TLS_CERT_FILE"

    clear_tls_env(monkeypatch)
    tls.configure(section, expected_name="worker-a", export_env=True)
    assert {k: os.environ[k] for k in env} == env
    assert load_config(None).tls == section  # what an executor's load_config() sees


def test_flags_of_the_standalone_commands(pki: dict[str, Issued], monkeypatch: pytest.MonkeyPatch) -> None:
    clear_tls_env(monkeypatch)
    parser = argparse.ArgumentParser()
    tls.add_tls_args(parser)
    section = pki["sched-a"].tls()
    assert tls.configure_from_args(parser.parse_args([])) is None
    with pytest.raises(ConfigError) as err:
        tls.configure_from_args(parser.parse_args(["--tls-ca", section.ca_file]))
    assert err.value.key == "--tls-cert" and "--tls-key" in err.value.message
    argv = ["--tls-ca", section.ca_file, "--tls-cert", section.cert_file, "--tls-key", section.key_file]
    with pytest.raises(ConfigError) as err:
        tls.configure_from_args(parser.parse_args(argv), expected_name="sched-b", name_key="scheduler.id")
    assert "scheduler.id" in err.value.message and err.value.key == "--tls-cert"
    material = tls.configure_from_args(parser.parse_args([*argv, "--tls-no-client-cert"]), expected_name="sched-a")
    assert material is not None and not material.require_client_cert

    monkeypatch.setenv("TENDRIL_TLS_CA_FILE", section.ca_file)
    monkeypatch.setenv("TENDRIL_TLS_CERT_FILE", section.cert_file)
    monkeypatch.setenv("TENDRIL_TLS_KEY_FILE", section.key_file)
    from_env = argparse.ArgumentParser()
    tls.add_tls_args(from_env)
    assert tls.configure_from_args(from_env.parse_args([])) is not None


# -- identity where the network meets: the gateway bus and the arbiter ----------------------------


def envelope(sender: str, scheduler_id: str) -> gateway_pb2.Envelope:
    request = arbiter_pb2.ResourceRequest(request_id="r-1", scheduler=common_pb2.PeerRef(id=scheduler_id))
    payload = any_pb2.Any()
    payload.Pack(request)
    return gateway_pb2.Envelope(topic="tendril/worker", sender=sender, payload=payload)


async def test_gateway_stamps_envelopes_with_the_publishers_certificate(pki: dict[str, Issued]) -> None:
    tls.configure(pki["worker-a"].tls())
    gateway = GatewayService("127.0.0.1:0", config_key="test.listen")
    await gateway.start()
    sched = tls.load(pki["sched-a"].tls())
    assert sched is not None
    try:
        async with (
            open_channel(gateway.address, peer_id="worker-a") as sub_channel,
            open_channel(gateway.address, peer_id="sched-b", credentials=sched.channel_credentials()) as pub_channel,
        ):
            call = gateway_pb2_grpc.BusServiceStub(sub_channel).Subscribe(
                gateway_pb2.SubscribeRequest(topic="tendril/worker")
            )
            await call.initial_metadata()
            forged = envelope("sched-b", "sched-b")
            reply = await gateway_pb2_grpc.BusServiceStub(pub_channel).Publish(
                gateway_pb2.PublishRequest(topic="tendril/worker", sender="sched-b", payload=forged.payload)
            )
            assert reply.delivered == 1
            message = await asyncio.wait_for(call.read(), 10)
            assert message.envelope.sender == "sched-a"  # the certificate, not the request's claim
            call.cancel()
    finally:
        await gateway.stop()


def test_bus_follower_drops_requests_published_in_another_schedulers_name() -> None:
    taken: list[arbiter_pb2.ResourceRequest] = []
    follower = BusFollower("127.0.0.1:1", "tendril/worker", peer_id="w", on_request=taken.append, verify_sender=True)
    follower._handle(envelope(sender="sched-a", scheduler_id="sched-b"))
    assert taken == [] and follower.forged == 1
    follower._handle(envelope(sender="sched-b", scheduler_id="sched-b"))
    assert [r.scheduler.id for r in taken] == ["sched-b"]

    plaintext = BusFollower("127.0.0.1:1", "tendril/worker", peer_id="w", on_request=taken.append)
    plaintext._handle(envelope(sender="sched-a", scheduler_id="sched-b"))
    assert len(taken) == 2 and plaintext.forged == 0


def test_standalone_commands_check_their_tls_flags(
    pki: dict[str, Issued], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_tls_env(monkeypatch)
    section = pki["sched-a"].tls()
    flags = ["--tls-ca", section.ca_file, "--tls-cert", section.cert_file, "--tls-key", section.key_file]
    job = ROOT / "deploy" / "job.toml"
    # The scheduler's certificate must name its scheduler.id (deploy/job.toml: "scheduler").
    assert run(["scheduler", "run", "--config", str(job), *flags]) == 2
    err = capsys.readouterr().err
    assert "scheduler.id" in err and "tendril certs issue scheduler" in err
    assert run(["data", "serve", str(tmp_path), "--tls-ca", section.ca_file]) == 2
    assert "--tls-cert" in capsys.readouterr().err
    assert run(["gateway", "run", "--listen", "127.0.0.1:1", "--tls-key", section.key_file]) == 2
    assert "--tls-ca" in capsys.readouterr().err
    assert tls.active() is None
