"""The development CA of the local stack and one certificate per component, for mutual TLS.

Generated at the first ``up`` under ``<state>/tls/`` (never committed: the state directory is
git-ignored) and reused after; a certificate that is missing, about to expire or not signed by
the current CA is made again. The layout is a cert-manager Secret's, one folder per holder::

    tls/ca.crt               the CA certificate every process trusts
    tls/ca.key               its key (0600), only to sign the certificates below
    tls/<holder>/tls.crt     the holder's certificate, URI SAN spiffe://ticketing.dev/<holder>
    tls/<holder>/tls.key     its key (0600)

Holders: the gateway (Envoy's client certificate towards the services), every component of
the mesh (the certificate its server presents and its internal clients present), ``stack``
(the supervisor's and ``ticketing status``'s health probes) and ``operator`` (a client
certificate for an operator's grpcurl or a test reaching a service port directly; a service
believes no identity header from it). Server certificates name 127.0.0.1 and localhost, where
the stack's services listen.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ticketing_common import mesh
from ticketing_common.tls import TlsFiles, identity_of

from .state import StateDir, write_private

GATEWAY = "gateway"
STACK = "stack"
OPERATOR = "operator"
# Every holder of a certificate; the mesh's components serve with theirs.
HOLDERS = (
    GATEWAY,
    STACK,
    OPERATOR,
    *(service.component for service in mesh.SERVICES),
    *mesh.WORKERS,
)
CA_DAYS = 3650
LEAF_DAYS = 365
# A certificate closer than this to its end is made again at the next start.
RENEW_BEFORE = dt.timedelta(days=30)


def tls_dir(state: StateDir) -> Path:
    return state.root / "tls"


def ca_path(state: StateDir) -> Path:
    return tls_dir(state) / "ca.crt"


def files_of(state: StateDir, holder: str) -> TlsFiles:
    """The certificate, key and CA a holder uses (see the module docstring)."""
    folder = tls_dir(state) / holder
    return TlsFiles(cert=folder / "tls.crt", key=folder / "tls.key", ca=ca_path(state))


def ensure_certs(state: StateDir) -> None:
    """Make the CA and every holder's certificate that is missing or stale."""
    root = tls_dir(state)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    ca_key, ca_cert = _ensure_ca(state)
    now = dt.datetime.now(dt.UTC)
    for holder in HOLDERS:
        files = files_of(state, holder)
        if _still_good(files.cert, ca_cert, now):
            continue
        files.cert.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(files.key, _key_pem(key))
        files.cert.write_bytes(
            _leaf(holder, key, ca_key, ca_cert, now).public_bytes(serialization.Encoding.PEM)
        )
    # Only the stack's processes read the keys; the holders' folders stay private too.
    for holder in HOLDERS:
        files_of(state, holder).cert.parent.chmod(0o700)


def _ensure_ca(state: StateDir) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path = tls_dir(state) / "ca.key"
    cert_path = ca_path(state)
    now = dt.datetime.now(dt.UTC)
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if isinstance(key, ec.EllipticCurvePrivateKey) and cert.not_valid_after_utc > now + (
            RENEW_BEFORE
        ):
            return key, cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ticketing development CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _leaf(
    holder: str,
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: dt.datetime,
) -> x509.Certificate:
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(identity_of(holder)),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, holder)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _still_good(cert_path: Path, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    key_path = cert_path.with_name("tls.key")
    if not cert_path.exists() or not key_path.exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc > now + RENEW_BEFORE


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
