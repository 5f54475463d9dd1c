"""`tendril certs init|issue`: a CA and node certificates that verify as real TLS chains, files 0600."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from tendril.certs import store as store_module
from tendril.certs.errors import CertError
from tendril.certs.names import default_dir
from tendril.certs.ops import init_ca, issue
from tendril.cli.main import run
from tendril.core.config import load_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_writes_a_ca_with_a_private_key_only_the_owner_reads(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "certs", name="Test CA", days=30)
    assert mode(paths.key) == 0o600
    assert mode(paths.cert) == 0o644
    assert mode(tmp_path / "certs") == 0o700
    ca = load(paths.cert)
    assert ca.subject == ca.issuer
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test CA"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc <= datetime.timedelta(days=30, minutes=6)
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["ca.key", "ca.pem"]


def test_issued_certificate_is_a_valid_server_and_client_chain(tmp_path: Path) -> None:
    ca_paths = init_ca(tmp_path)
    issued = issue(tmp_path, "worker-a", sans=["node1.example", "10.0.0.5"])
    assert issued.paths.cert == (tmp_path / "worker-a.pem").resolve()
    assert mode(issued.paths.key) == 0o600
    cert = load(issued.paths.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "worker-a"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "node1.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.5"),
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    # A real path validation (RFC 5280 + CA/B web PKI rules) as a server for each SAN and as a client.
    builder = PolicyBuilder().store(Store([load(ca_paths.cert)]))
    for name in (
        x509.DNSName("localhost"),
        x509.DNSName("node1.example"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
    ):
        chain = builder.build_server_verifier(name).verify(cert, [])
        assert len(chain) == 2
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("other.example")).verify(cert, [])
    client = builder.build_client_verifier().verify(cert, [])
    assert client.chain[0] == cert and len(client.chain) == 2

    # ... and not against another CA.
    other = init_ca(tmp_path / "other")
    with pytest.raises(VerificationError):
        PolicyBuilder().store(Store([load(other.cert)])).build_client_verifier().verify(cert, [])


def test_nothing_is_overwritten_without_force(tmp_path: Path) -> None:
    init_ca(tmp_path)
    ca_before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(CertError) as err:
        init_ca(tmp_path)
    assert err.value.reason == "EXISTS" and "--force" in err.value.message
    assert (tmp_path / "ca.pem").read_bytes() == ca_before

    issue(tmp_path, "sched-a")
    cert_before = (tmp_path / "sched-a.pem").read_bytes()
    with pytest.raises(CertError) as err:
        issue(tmp_path, "sched-a")
    assert err.value.reason == "EXISTS"
    assert (tmp_path / "sched-a.pem").read_bytes() == cert_before
    issue(tmp_path, "sched-a", force=True)
    assert (tmp_path / "sched-a.pem").read_bytes() != cert_before
    init_ca(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != ca_before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_a_failed_write_leaves_neither_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_ca(tmp_path)
    real_replace = os.replace
    calls: list[str] = []

    def failing_replace(src: str, dst: Path) -> None:
        calls.append(str(dst))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", failing_replace)
    with pytest.raises(OSError):
        issue(tmp_path, "worker-b")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "BAD_NAME"), ("has space", "BAD_NAME"), ("../up", "BAD_NAME"), ("-x", "BAD_NAME"), ("CA", "RESERVED_NAME")],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    init_ca(tmp_path)
    with pytest.raises(CertError) as err:
        issue(tmp_path, name)
    assert err.value.reason == reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]


@pytest.mark.parametrize("san", ["bad host", "", "-lead.example", "a..b", "x" * 64 + ".example"])
def test_bad_sans_are_refused(tmp_path: Path, san: str) -> None:
    init_ca(tmp_path)
    with pytest.raises(CertError) as err:
        issue(tmp_path, "w", sans=[san])
    assert err.value.reason == "BAD_SAN"


def test_issue_needs_a_ca_and_caps_validity_at_the_cas(tmp_path: Path) -> None:
    with pytest.raises(CertError) as err:
        issue(tmp_path / "none", "w")
    assert err.value.reason == "CA_MISSING" and "tendril certs init" in err.value.message
    ca = load(init_ca(tmp_path, days=10).cert)
    issued = issue(tmp_path, "w", days=400, sans=["*.example.org", "[::1]"])
    cert = load(issued.paths.cert)
    assert cert.not_valid_after_utc == ca.not_valid_after_utc
    assert "*.example.org" in issued.sans and "::1" in issued.sans
    with pytest.raises(CertError) as err:
        issue(tmp_path, "w2", days=0)
    assert err.value.reason == "BAD_DAYS"


def test_a_damaged_ca_is_reported(tmp_path: Path) -> None:
    init_ca(tmp_path)
    other = init_ca(tmp_path / "other")
    (tmp_path / "ca.key").write_bytes(other.key.read_bytes())
    with pytest.raises(CertError) as err:
        issue(tmp_path, "w")
    assert err.value.reason == "CA_KEY_MISMATCH"
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(CertError) as err:
        issue(tmp_path, "w")
    assert err.value.reason == "CA_UNREADABLE"


def test_cli_init_and_issue_print_a_usable_tls_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "pki"
    assert run(["certs", "init", "--dir", str(d), "--days", "5"]) == 0
    assert str(d / "ca.key") in capsys.readouterr().out
    assert run(["certs", "issue", "worker-x", "--dir", str(d), "--san", "host.example"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("[tls]\n") :]
    (tmp_path / "worker.toml").write_text(table + '[worker]\nid = "worker-x"\n')
    config = load_config(tmp_path / "worker.toml", env={})
    assert config.tls.cert_file == str((d / "worker-x.pem").resolve())
    assert config.tls.enabled and config.tls.require_client_cert

    assert run(["certs", "issue", "worker-x", "--dir", str(d)]) == 2
    assert "--force" in capsys.readouterr().err
    assert run(["certs", "init", "--dir", str(d)]) == 2
    assert run(["certs", "issue", "bad name", "--dir", str(d)]) == 2
    assert "peer id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["certs", "init", "--dir", str(d), "--days", "0"])


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "tendril" / "certs"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert default_dir() == Path.home() / ".config" / "tendril" / "certs"
