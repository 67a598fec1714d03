"""AIP-155 request ids: a retried mutation returns the first answer instead of acting twice.

The key is claimed inside the same transaction as the mutation itself, so the claim and the
effect commit (or roll back) together. A concurrent retry blocks on the claim's unique index
until the first transaction ends, then replays its answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from psycopg import AsyncConnection

from ticketing_common.errors import InvalidArgument, Reason

MAX_REQUEST_ID_LENGTH = 128


async def run_once(
    conn: AsyncConnection,
    *,
    user_id: str,
    method: str,
    request_id: str,
    request: bytes,
    action: Callable[[], Awaitable[bytes]],
) -> bytes:
    """Run ``action`` (which returns the serialized response) once per (user, method,
    request_id) within the caller's open transaction on ``conn``; without a request_id just
    run it."""
    if not request_id:
        return await action()
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument(
            f"request_id is longer than {MAX_REQUEST_ID_LENGTH} characters",
            metadata={"field": "request_id"},
        )
    digest = hashlib.sha256(request).digest()
    claim = await conn.execute(
        """
        INSERT INTO idempotency_keys (user_id, method, request_id, request_hash)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT DO NOTHING
        RETURNING true
        """,
        (user_id, method, request_id, digest),
    )
    if await claim.fetchone() is not None:  # (fetching also works in pipeline mode)
        response = await action()
        await conn.execute(
            """
            UPDATE idempotency_keys SET response = %s, status_code = 0
            WHERE user_id = %s AND method = %s AND request_id = %s
            """,
            (response, user_id, method, request_id),
        )
        return response
    cur = await conn.execute(
        """
        SELECT request_hash, response FROM idempotency_keys
        WHERE user_id = %s AND method = %s AND request_id = %s
        """,
        (user_id, method, request_id),
    )
    row = await cur.fetchone()
    if row is None or row[1] is None or bytes(row[0]) != digest:
        raise InvalidArgument(
            "request_id was already used for a different request",
            reason=Reason.REQUEST_ID_REUSED,
            metadata={"field": "request_id"},
        )
    return bytes(row[1])
