"""Ids and pages shared by every service: canonical UUIDs and opaque page tokens (AIP-158).

A page token carries the last key of the previous page and a fingerprint of the query that made
it, so a token is refused by a different query instead of silently skipping results.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from ticketing_common.errors import InvalidArgument, Reason


def parse_id(raw: str, field: str) -> str:
    """A canonical UUID string, or INVALID_ARGUMENT naming the field."""
    try:
        return str(uuid.UUID(raw))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(
            f"{field} must be a UUID, got {raw[:64]!r}",
            reason=Reason.MALFORMED_ID,
            metadata={"field": field},
        ) from None


def page_size(requested: int, *, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", metadata={"field": "page_size"})
    return min(requested or default, maximum)


def query_fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def encode_page_token(fingerprint: str, last_key: Sequence[Any]) -> str:
    raw = json.dumps({"q": fingerprint, "k": list(last_key)}, default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> list[Any] | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["q"] == fingerprint and isinstance(data["k"], list):
            return list(data["k"])
    except (ValueError, KeyError, TypeError):
        pass
    raise invalid_page_token()


def invalid_page_token() -> InvalidArgument:
    """The error of a token that is not one this query made (or of a key in it that does not
    parse)."""
    return InvalidArgument(
        "page_token is malformed or belongs to a different query",
        reason=Reason.INVALID_PAGE_TOKEN,
        metadata={"field": "page_token"},
    )
