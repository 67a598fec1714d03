"""Mutual TLS between the gateway and the services, and between services.

Every gRPC server of the mesh requires a client certificate signed by the mesh's CA
(``TICKETING_TLS_CA``) and presents its own (``TICKETING_TLS_CERT``/``TICKETING_TLS_KEY``);
every internal client (the health fan-out to ``TICKETING_PEERS``) presents its process's
certificate the same way. A certificate names its holder in a SPIFFE-style URI SAN,
``spiffe://ticketing.dev/<component>`` (``identity_of``): the local stack's development CA
(``deploy/stack/certs.py``) and the chart's cert-manager ``Certificate`` both write it.

Who may say who the caller is: only the gateway. A call whose peer certificate carries the
gateway's identity (``TICKETING_TLS_GATEWAY_IDENTITY``) has its ``x-ticketing-user`` /
``x-ticketing-role`` headers believed; any other peer (another service, an operator's grpcurl
with the development client certificate) is served as an anonymous caller
(``ticketing_common.identity``). A peer with no certificate never gets past the handshake.

Plaintext (``TICKETING_PLAINTEXT=true``) exists for processes a test or a benchmark starts
in-process on the loopback; it must be asked for, and then the identity headers are believed
from anyone, as before mutual TLS.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grpc

TRUST_DOMAIN = "ticketing.dev"


def identity_of(component: str) -> str:
    """The URI SAN a component's certificate carries."""
    return f"spiffe://{TRUST_DOMAIN}/{component}"


GATEWAY_IDENTITY = identity_of("gateway")


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """A certificate (PEM chain), its private key and the CA that signs the mesh's peers."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def missing(self) -> list[Path]:
        return [path for path in (self.cert, self.key, self.ca) if not path.is_file()]


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """A server that presents ``files.cert`` and refuses any client without a certificate
    signed by ``files.ca``."""
    cert, key, ca = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """A client that verifies the server against ``files.ca`` and presents ``files.cert``."""
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def peer_identities(context: Any) -> list[str]:
    """The authenticated peer's names (its certificate's SANs, URI first), empty on a
    plaintext call or a context that is not a served call's."""
    getter = getattr(context, "peer_identities", None)
    found = getter() if getter is not None else None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in found or ()]


def internal_channel(
    address: str, files: TlsFiles | None, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """A channel from one service of the mesh to another (``settings.tls`` of the caller: its
    own certificate; None in plaintext). Every internal client opens its channels here."""
    if files is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, channel_credentials(files), options=options)
