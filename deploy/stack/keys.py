"""The development JWT issuer: an RS256 key pair kept in the state directory.

The private key (``keys/jwt-private.pem``, mode 0600) is generated at the first ``up`` or
``token``; the public half is published as ``keys/jwks.json`` (with a ``kid``), which Envoy's
jwt_authn filter reads. Nothing here is ever committed: the state directory is git-ignored.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .state import StateDir, write_json_atomic, write_private

ISSUER = "ticketing-dev"
AUDIENCE = "ticketing"
DEFAULT_ROLE = "user"
DEFAULT_TTL_SECONDS = 3600
ALGORITHM = "RS256"


def private_key_path(state: StateDir) -> Path:
    return state.keys / "jwt-private.pem"


def jwks_path(state: StateDir) -> Path:
    return state.keys / "jwks.json"


def ensure_keys(state: StateDir) -> rsa.RSAPrivateKey:
    """Load the signing key, generating it (and the JWKS) the first time."""
    state.keys.mkdir(parents=True, exist_ok=True)
    state.keys.chmod(0o700)
    pem_path = private_key_path(state)
    if pem_path.exists():
        key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise RuntimeError(f"{pem_path} does not hold an RSA private key")
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(pem_path, pem)
    publish_jwks(state, key)
    return key


def publish_jwks(state: StateDir, key: rsa.RSAPrivateKey) -> None:
    """Write ``keys/jwks.json`` unless it already publishes this key."""
    wanted = {"keys": [public_jwk(key)]}
    path = jwks_path(state)
    try:
        if json.loads(path.read_text()) == wanted:
            return
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    write_json_atomic(path, wanted)


def key_id(key: rsa.RSAPrivateKey) -> str:
    """RFC 7638 thumbprint of the public key, used as ``kid``."""
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    canonical = json.dumps({name: jwk[name] for name in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return dict(jwk) | {"kid": key_id(key), "use": "sig", "alg": ALGORITHM}


def claims_for(
    user: str,
    role: str = DEFAULT_ROLE,
    ttl: int = DEFAULT_TTL_SECONDS,
    audience: str = AUDIENCE,
    now: int | None = None,
) -> dict[str, Any]:
    issued = int(time.time()) if now is None else now
    return {
        "iss": ISSUER,
        "aud": audience,
        "sub": user,
        "role": role,
        "iat": issued,
        "exp": issued + ttl,
    }


def sign(key: rsa.RSAPrivateKey, claims: dict[str, Any], kid: str | None = None) -> str:
    headers = {"kid": kid or key_id(key)}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers=headers)


@dataclasses.dataclass(frozen=True)
class Signer:
    """The development key, parsed once, with its ``kid``: minting is one RSA signature."""

    key: rsa.RSAPrivateKey
    kid: str

    def sign(self, claims: dict[str, Any]) -> str:
        return sign(self.key, claims, kid=self.kid)


# Per key file: the file's (mtime, size) when it was parsed, and its signer. A key file that
# changes (a new state directory at the same path) is parsed again.
_signers: dict[Path, tuple[tuple[int, int], Signer]] = {}


def signer(state: StateDir) -> Signer:
    """The stack's signer, generating the key pair (and the JWKS) the first time."""
    path = private_key_path(state).absolute()
    cached = _signers.get(path)
    if cached is not None and cached[0] == _stamp(path):
        return cached[1]
    key = ensure_keys(state)
    found = Signer(key, key_id(key))
    _signers[path] = (_stamp(path), found)
    return found


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (info.st_mtime_ns, info.st_size)


def mint_token(
    state: StateDir,
    user: str,
    role: str = DEFAULT_ROLE,
    ttl: int = DEFAULT_TTL_SECONDS,
    audience: str = AUDIENCE,
    **overrides: Any,
) -> str:
    """A token for ``user`` signed by the stack's development key; overrides replace claims.

    The key is parsed once per process (not once per token) and the JWKS, which Envoy
    watches, is written only when it does not already publish the key."""
    claims = claims_for(user, role=role, ttl=ttl, audience=audience) | overrides
    return signer(state).sign(claims)
