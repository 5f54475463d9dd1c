"""The cryptography: a private CA and node certificates it signs (no files, no grpc here).

Keys are EC P-256 (fast handshakes, small certificates; every TLS stack gRPC uses accepts
them), written as unencrypted PKCS#8 PEM because services start unattended. A node
certificate is good for both sides of mTLS (serverAuth and clientAuth): one worker key serves
its services and signs its calls to other peers.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tendril.certs.errors import CertError, CertReason
from tendril.core.errors import ErrorKind

ORGANIZATION = "Tendril"
DEFAULT_CA_DAYS = 3650
DEFAULT_NODE_DAYS = 825
# Certificates start a little in the past so a peer whose clock runs behind accepts them at once.
BACKDATE = datetime.timedelta(minutes=5)

San = ipaddress.IPv4Address | ipaddress.IPv6Address | str


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_days(days: int) -> None:
    if days < 1:
        raise CertError(
            ErrorKind.INVALID_ARGUMENT, f"--days must be at least 1 (got {days})", reason=CertReason.BAD_DAYS
        )


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - BACKDATE, now + datetime.timedelta(days=days)


def create_ca(common_name: str, *, days: int = DEFAULT_CA_DAYS) -> KeyPair:
    """A self-signed CA that may sign node certificates only (path length 0)."""
    _check_days(days)
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    not_before, not_after = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def default_ca_name() -> str:
    """A CA name that tells two private CAs apart in error messages and `openssl x509` output."""
    return f"Tendril CA {uuid.uuid4().hex[:8]}"


CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def load_ca(ca: KeyPair) -> tuple[x509.Certificate, CaKey]:
    """Parse a CA pair; CertError when it is not a CA certificate with its matching key."""
    try:
        cert = x509.load_pem_x509_certificate(ca.cert_pem)
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(
            ErrorKind.FAILED_PRECONDITION,
            f"the CA files cannot be read ({exc}); recreate the CA with `tendril certs init --force` "
            "(certificates it issued stop working)",
            reason=CertReason.CA_UNREADABLE,
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
        raise CertError(
            ErrorKind.FAILED_PRECONDITION,
            "ca.key does not belong to ca.pem; restore the pair written by `tendril certs init`",
            reason=CertReason.CA_KEY_MISMATCH,
        )
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertError(ErrorKind.FAILED_PRECONDITION, "ca.pem is not a CA certificate", reason=CertReason.NOT_A_CA)
    return cert, key


def issue_node(ca: KeyPair, common_name: str, sans: list[San], *, days: int = DEFAULT_NODE_DAYS) -> KeyPair:
    """A node certificate with CN = ``common_name`` for ``sans``, signed by ``ca``."""
    _check_days(days)
    ca_cert, ca_key = load_ca(ca)
    key = _new_key()
    not_before, not_after = _validity(days)
    if not_after > ca_cert.not_valid_after_utc:
        # NOTE: a certificate can never outlive its issuer in a verifier's eyes; cap it so the
        # file says the truth about how long it works.
        not_after = ca_cert.not_valid_after_utc
    general_names: list[x509.GeneralName] = [
        x509.IPAddress(s) if not isinstance(s, str) else x509.DNSName(s) for s in sans
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
