"""mTLS for every TCP server and channel of a process, configured once at process start.

``configure(config.tls)`` (called by :func:`tendril.core.process.service_main`, the
supervisor and the standalone commands) reads the CA, certificate and key, checks that they
fit together, and sets the process-wide default that :class:`~tendril.core.server.ServiceServer`
and :func:`~tendril.core.channel.open_channel` use when they are given no
credentials. Servers then trust only the CA and (by default) require a client certificate;
channels present this peer's certificate and verify the server's against the CA and the
dialled host name (certificates carry SANs for localhost, 127.0.0.1 and the hosts given at
issue). ``unix:`` addresses — the job bridge — always stay plaintext: the bridge is guarded by
its 0700 directory, 0600 socket and per-job token.

Identity: under mTLS a caller's peer id is the CN of its certificate (see
:mod:`tendril.core.identity`); the process's own certificate must therefore name the
peer id it acts as (:func:`configure` checks ``expected_name``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tendril.core.config import ENV_PREFIX, TlsSection, validate_tls
from tendril.core.errors import ConfigError

LOCAL_PREFIXES = ("unix:", "unix-abstract:")
FALSE_WORDS = ("0", "false", "no", "off")
WILDCARD_HOSTS = ("0.0.0.0", "::")


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes of one peer's mTLS setup, checked to fit together."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    name: str  # the CN of cert_pem: the peer id others see
    require_client_cert: bool = True

    def server_credentials(self) -> grpc.ServerCredentials:
        """Trust only the CA; require a client certificate unless configured otherwise."""
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=self.require_client_cert,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Verify servers against the CA; present this peer's certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )

    def ssl_context(self, *, server: bool) -> ssl.SSLContext:
        """The same trust and certificate for a plain TLS socket (the tensor streams' data plane).

        A server trusts only the CA and requires a client certificate as the gRPC server does; a
        client verifies the server's chain against the CA but not its host name: the data plane
        pins the server's certificate by the fingerprint its authenticated gRPC call named.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=self.ca_pem.decode())
        # NOTE: the ssl module loads a certificate and key from files only: a private directory
        # holds them for the call (the PEM bytes were read from the configured files).
        with tempfile.TemporaryDirectory(prefix="tendril-tls-") as folder:
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_bytes(self.cert_pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(self.key_pem)
            context.load_cert_chain(cert, key)
        if server:
            context.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_NONE
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def certificate_sha256(self) -> str:
        """Hex sha256 of this peer's certificate (DER): what a data-plane client pins."""
        der = x509.load_pem_x509_certificate(self.cert_pem).public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key} = {path!r} cannot be read: {exc.strerror}", key=key) from exc


def certificate_name(cert: x509.Certificate) -> str:
    """The CN of a certificate ("" when it has none)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value.decode() if isinstance(value, bytes) else str(value)


def load(section: TlsSection, *, names: Mapping[str, str] | None = None) -> TlsMaterial | None:
    """Read and check the files of ``section``; None when TLS is off.

    Checks, each a ConfigError naming the key: all three files or none, readable PEM, the key
    belongs to the certificate, the CA signed the certificate, the certificate is valid now.
    """
    validate_tls(section, names=names)
    if not section.enabled:
        return None
    keys = {field: (names or {}).get(field, f"tls.{field}") for field in TlsSection.FILE_KEYS}
    ca_pem = _read(section.ca_file, keys["ca_file"])
    cert_pem = _read(section.cert_file, keys["cert_file"])
    key_pem = _read(section.key_file, keys["key_file"])
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise ConfigError(f"{keys['ca_file']}: not a PEM certificate ({exc})", key=keys["ca_file"]) from exc
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"{keys['cert_file']}: not a PEM certificate ({exc})", key=keys["cert_file"]) from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{keys['key_file']}: not an unencrypted PEM private key ({exc})", key=keys["key_file"]
        ) from exc
    if key.public_key() != cert.public_key():
        raise ConfigError(
            f"{keys['key_file']} is not the key of {keys['cert_file']}; give the .key written beside that .pem",
            key=keys["key_file"],
        )
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError(
            f"{keys['cert_file']} was not issued by the CA in {keys['ca_file']} ({exc}); issue it with "
            "`tendril certs issue NAME --dir <the CA's directory>`",
            key=keys["cert_file"],
        ) from exc
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(
            f"{keys['cert_file']} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now; "
            "issue a new one (`tendril certs issue NAME --force`)",
            key=keys["cert_file"],
        )
    return TlsMaterial(ca_pem, cert_pem, key_pem, certificate_name(cert), section.require_client_cert)


# -- the process-wide default ---------------------------------------------------------------------

_active: TlsMaterial | None = None


def configure(
    section: TlsSection | None,
    *,
    expected_name: str = "",
    name_key: str = "worker.id",
    names: Mapping[str, str] | None = None,
    export_env: bool = False,
) -> TlsMaterial | None:
    """Set (or, for an empty section, clear) this process's default mTLS setup.

    ``expected_name`` is the peer id this process acts as: its certificate's CN must equal it,
    or every peer would see another identity than the one it claims (``name_key`` names the
    setting to fix). ``export_env`` also puts the ``TENDRIL_TLS_*`` variables in this process's
    environment, so that programs it spawns (executors) find the same files.
    """
    global _active
    material = load(section, names=names) if section is not None else None
    if material is not None and expected_name and material.name != expected_name:
        cert_key = (names or {}).get("cert_file", "tls.cert_file")
        raise ConfigError(
            f"{cert_key} names {material.name!r} (its CN) but {name_key} is {expected_name!r}: peers identify "
            f"callers by the certificate, so issue one for this id (`tendril certs issue {expected_name}`) "
            f"or set {name_key} = {material.name!r}",
            key=cert_key,
        )
    _active = material
    if export_env and material is not None and section is not None:
        os.environ.update(environment(section))
    return material


def active() -> TlsMaterial | None:
    """The process-wide setup, or None for plaintext."""
    return _active


def mutual() -> bool:
    """True when this process's servers authenticate every caller by certificate."""
    return _active is not None and _active.require_client_cert


def is_local(address: str) -> bool:
    """A Unix socket address (always plaintext)."""
    return address.startswith(LOCAL_PREFIXES)


def default_server_credentials(listen: str) -> grpc.ServerCredentials | None:
    """What a server on ``listen`` uses when it was given no credentials; None = plaintext."""
    if _active is None or is_local(listen):
        return None
    return _active.server_credentials()


def default_channel_credentials(address: str) -> grpc.ChannelCredentials | None:
    """What a channel to ``address`` uses when it was given no credentials; None = plaintext."""
    if _active is None or is_local(address):
        return None
    return _active.channel_credentials()


def channel_options(address: str) -> list[tuple[str, str]]:
    """Extra channel options for a TLS channel to ``address``.

    A worker's services dial each other at their listen address; one listening on every
    interface ("0.0.0.0:port", "[::]:port") is reached on this host, which no certificate
    names: its host name is checked as "localhost" (a SAN of every certificate) instead.
    """
    host = address.rpartition(":")[0].strip("[]")
    return [("grpc.ssl_target_name_override", "localhost")] if host in WILDCARD_HOSTS else []


def env_var(field: str) -> str:
    """The variable of a [tls] key, as load_config reads it: ``TENDRIL_TLS_CA_FILE`` ..."""
    return f"{ENV_PREFIX}TLS_{field.upper()}"


def _env_true(env: Mapping[str, str], field: str) -> bool:
    return env.get(env_var(field), "true").strip().lower() not in FALSE_WORDS


def environment(section: TlsSection) -> dict[str, str]:
    """``TENDRIL_TLS_*`` variables that reproduce ``section`` in a child's config (absolute paths)."""
    out = {
        env_var(field): str(Path(value).expanduser().resolve()) if (value := getattr(section, field)) else ""
        for field in TlsSection.FILE_KEYS
    }
    out[env_var("require_client_cert")] = "true" if section.require_client_cert else "false"
    return out


def configure_from_env(environ: Mapping[str, str] | None = None, *, expected_name: str = "") -> TlsMaterial | None:
    """:func:`configure` from ``TENDRIL_TLS_*`` variables (what an executor inherits)."""
    env = os.environ if environ is None else environ
    section = TlsSection(
        **{field: env.get(env_var(field), "") for field in TlsSection.FILE_KEYS},
        require_client_cert=_env_true(env, "require_client_cert"),
    )
    names = {field: env_var(field) for field in TlsSection.FILE_KEYS}
    return configure(section, expected_name=expected_name, names=names)


# -- flags of the standalone commands (gateway, scheduler, data node) ---------------------------

FLAG_NAMES = {"ca_file": "--tls-ca", "cert_file": "--tls-cert", "key_file": "--tls-key"}
_FLAG_HELP = {
    "ca_file": "the CA certificate every peer trusts",
    "cert_file": "this peer's certificate (CN = its peer id)",
    "key_file": "its private key",
}


def add_tls_args(parser: argparse.ArgumentParser) -> None:
    """``--tls-ca/--tls-cert/--tls-key`` (default: the ``TENDRIL_TLS_*`` variables) and ``--tls-no-client-cert``."""
    group = parser.add_argument_group("mTLS (all three files, or none for plaintext; see docs/CERTIFICATES.md)")
    for field, flag in FLAG_NAMES.items():
        group.add_argument(
            flag,
            dest=f"tls_{field}",
            default=os.environ.get(env_var(field), ""),
            metavar="PEM",
            help=f"{_FLAG_HELP[field]} (default ${env_var(field)})",
        )
    group.add_argument(
        "--tls-no-client-cert",
        dest="tls_require_client_cert",
        action="store_false",
        default=_env_true(os.environ, "require_client_cert"),
        help="do not ask callers for a certificate (server-only TLS; callers name themselves in metadata)",
    )


def configure_from_args(args: argparse.Namespace, *, expected_name: str = "", name_key: str = "") -> TlsMaterial | None:
    """:func:`configure` from the flags of :func:`add_tls_args`."""
    section = TlsSection(
        ca_file=args.tls_ca_file,
        cert_file=args.tls_cert_file,
        key_file=args.tls_key_file,
        require_client_cert=args.tls_require_client_cert,
    )
    return configure(section, expected_name=expected_name, name_key=name_key or "the peer id", names=FLAG_NAMES)
