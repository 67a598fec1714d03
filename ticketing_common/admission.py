"""Admission tokens: the waiting queue's signed pass into a sale, checked by booking.

A token is a compact JWT (HS256, key shared by the queue and booking services only, from
``TICKETING_ADMISSION_KEY``) bound to one user and one event, valid until its ``exp``. The
queue signs it when it admits a user; booking refuses a reservation for a queue-enabled event
unless the caller presents a valid token for that same user and event (reason NOT_ADMITTED).
"""

from __future__ import annotations

import datetime as dt
import uuid

import jwt

from ticketing_common.errors import PermissionDenied, Reason

AUDIENCE = "ticketing-admission"
ALGORITHM = "HS256"
# Clocks of the two services may differ a little.
LEEWAY_SECONDS = 2


def sign(key: str, *, user_id: str, event_id: str, expire_time: dt.datetime) -> str:
    claims = {
        "sub": user_id,
        "evt": event_id,
        "aud": AUDIENCE,
        "exp": int(expire_time.timestamp()),
        "iat": int(dt.datetime.now(dt.UTC).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, token: str, *, user_id: str, event_id: str) -> dt.datetime:
    """The admission's expiry, or PermissionDenied(NOT_ADMITTED) saying what is wrong."""
    if not token:
        raise _refused("this sale goes through the waiting queue: join it to get an admission")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub", "evt", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise _refused("the admission has expired: join the queue again") from None
    except jwt.InvalidTokenError:
        raise _refused("the admission token is not valid") from None
    if claims["sub"] != user_id or claims["evt"] != event_id:
        raise _refused("the admission belongs to another user or another event")
    return dt.datetime.fromtimestamp(claims["exp"], dt.UTC)


def admitted_event(key: str, token: str, *, user_id: str) -> str | None:
    """The event a valid admission of this user is for, or None (no token, or one that
    ``verify`` would refuse whatever the event). Lets the database check the event in the
    same statement that holds the seats; ``verify`` then explains a refusal."""
    if not token:
        return None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub", "evt", "aud"]},
        )
    except jwt.InvalidTokenError:
        return None
    if claims["sub"] != user_id:
        return None
    try:
        return str(uuid.UUID(str(claims["evt"])))
    except ValueError:
        return None


def _refused(message: str) -> PermissionDenied:
    return PermissionDenied(message, reason=Reason.NOT_ADMITTED)
