"""Who is calling. The gateway verifies the JWT and forwards its subject and role in these
headers after stripping any incoming copy; services trust nothing else.

The headers are believed only from the gateway: on every call the server's interceptor
(``ticketing_common.interceptors``) records whether the authenticated peer is the gateway
(``ticketing_common.tls``), and ``caller_from_metadata`` reads an anonymous caller from any
other peer. Outside a served call (a unit test calling a servicer) the headers are believed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from contextvars import ContextVar

from ticketing_common.errors import PermissionDenied, Reason, Unauthenticated

USER_HEADER = "x-ticketing-user"
ROLE_HEADER = "x-ticketing-role"
REQUEST_ID_HEADER = "x-request-id"
OPERATOR_ROLE = "operator"

# Whether the peer of the call being served may say who the caller is (set per call by the
# server's interceptor: True for the gateway's certificate or a plaintext process).
identity_headers_trusted: ContextVar[bool] = ContextVar("identity_headers_trusted", default=True)


@dataclasses.dataclass(frozen=True)
class Caller:
    user_id: str | None
    role: str | None

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR_ROLE

    def require_user(self) -> str:
        if not self.user_id:
            raise Unauthenticated("this method needs a signed-in user (a bearer JWT)")
        return self.user_id

    def require_operator(self) -> str:
        user = self.require_user()
        if not self.is_operator:
            raise PermissionDenied(
                "this method is for operators (JWT role 'operator')",
                reason=Reason.OPERATOR_REQUIRED,
            )
        return user


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    if not identity_headers_trusted.get():
        return Caller(user_id=None, role=None)
    values = {key: value for key, value in (metadata or ()) if isinstance(value, str)}
    return Caller(user_id=values.get(USER_HEADER) or None, role=values.get(ROLE_HEADER) or None)
