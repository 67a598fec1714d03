"""The development JWT issuer: tokens verify against the published JWKS, the key is parsed once
per process, and the JWKS file Envoy watches is never rewritten when it already holds the key."""

import json
import time

import jwt
from cryptography.hazmat.primitives import serialization

from deploy.stack import keys
from deploy.stack.state import StateDir


def test_tokens_verify_against_the_published_jwks(tmp_path):
    state = StateDir(tmp_path)
    token = keys.mint_token(state, "alice", role="operator")
    jwks = json.loads(keys.jwks_path(state).read_text())
    public = jwt.PyJWKSet(jwks["keys"]).keys[0]
    assert jwt.get_unverified_header(token)["kid"] == public.key_id
    claims = jwt.decode(token, public.key, algorithms=["RS256"], audience=keys.AUDIENCE)
    assert (claims["sub"], claims["role"], claims["iss"]) == ("alice", "operator", keys.ISSUER)


def test_many_tokens_parse_the_key_once_and_leave_the_jwks_alone(tmp_path, monkeypatch):
    state = StateDir(tmp_path)
    keys.mint_token(state, "first")
    jwks = keys.jwks_path(state)
    before = jwks.stat()
    parsed = []
    real = serialization.load_pem_private_key
    monkeypatch.setattr(
        serialization, "load_pem_private_key", lambda *a, **k: parsed.append(1) or real(*a, **k)
    )
    time.sleep(0.01)  # a rewrite would show in the modification time
    tokens = [keys.mint_token(state, f"buyer-{i}") for i in range(200)]
    assert len(set(tokens)) == 200
    assert parsed == []
    after = jwks.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_new_key_at_the_same_path_is_picked_up(tmp_path):
    state = StateDir(tmp_path)
    old = keys.mint_token(state, "alice")
    keys.private_key_path(state).unlink()
    new = keys.mint_token(state, "alice")  # a fresh key pair, published anew
    assert jwt.get_unverified_header(new)["kid"] != jwt.get_unverified_header(old)["kid"]
    published = json.loads(keys.jwks_path(state).read_text())["keys"][0]["kid"]
    assert published == jwt.get_unverified_header(new)["kid"]
