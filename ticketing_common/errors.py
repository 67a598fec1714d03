"""Domain errors: what went wrong in the business's words, free of any transport.

Each error carries a ``kind`` (which canonical status it becomes at the edge) and a ``reason``,
an UPPER_SNAKE constant that clients may branch on and that never changes meaning
(AIP-193 ErrorInfo.reason). The gRPC layer maps them in one place:
``ticketing_common.interceptors.ServiceInterceptor``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

ERROR_DOMAIN = "ticketing.dev"


class Kind(enum.Enum):
    """The canonical status a domain error maps to."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    UNIMPLEMENTED = "UNIMPLEMENTED"


class Reason(enum.StrEnum):
    """Every ErrorInfo.reason the platform emits. Add; never rename or reuse."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    MALFORMED_ID = "MALFORMED_ID"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # noqa: S105 (a reason, not a secret)
    EVENT_NOT_FOUND = "EVENT_NOT_FOUND"
    VENUE_NOT_FOUND = "VENUE_NOT_FOUND"
    PERFORMER_NOT_FOUND = "PERFORMER_NOT_FOUND"
    TICKET_NOT_FOUND = "TICKET_NOT_FOUND"
    BOOKING_NOT_FOUND = "BOOKING_NOT_FOUND"
    TICKETS_ALREADY_GENERATED = "TICKETS_ALREADY_GENERATED"
    VENUE_TIME_CONFLICT = "VENUE_TIME_CONFLICT"
    TICKET_UNAVAILABLE = "TICKET_UNAVAILABLE"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    NOT_HOLDER = "NOT_HOLDER"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"
    NOT_ADMITTED = "NOT_ADMITTED"
    QUEUE_NOT_ENABLED = "QUEUE_NOT_ENABLED"
    AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"
    OPERATOR_REQUIRED = "OPERATOR_REQUIRED"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    DEPENDENCY_UNAVAILABLE = "DEPENDENCY_UNAVAILABLE"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    SALE_NOT_OPEN = "SALE_NOT_OPEN"
    SALE_CLOSED = "SALE_CLOSED"
    WEBHOOK_SIGNATURE_INVALID = "WEBHOOK_SIGNATURE_INVALID"
    NOT_IN_QUEUE = "NOT_IN_QUEUE"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"  # bytes that do not parse as the request message


class DomainError(Exception):
    """Base of every error a client is meant to see."""

    kind: Kind = Kind.FAILED_PRECONDITION
    reason: Reason = Reason.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(DomainError):
    kind = Kind.INVALID_ARGUMENT
    reason = Reason.INVALID_ARGUMENT


class NotFound(DomainError):
    kind = Kind.NOT_FOUND


class AlreadyExists(DomainError):
    kind = Kind.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    kind = Kind.FAILED_PRECONDITION


class PermissionDenied(DomainError):
    kind = Kind.PERMISSION_DENIED
    reason = Reason.OPERATOR_REQUIRED


class Unauthenticated(DomainError):
    kind = Kind.UNAUTHENTICATED
    reason = Reason.AUTHENTICATION_REQUIRED


class ResourceExhausted(DomainError):
    kind = Kind.RESOURCE_EXHAUSTED


class Aborted(DomainError):
    kind = Kind.ABORTED


class Unavailable(DomainError):
    kind = Kind.UNAVAILABLE
    reason = Reason.DEPENDENCY_UNAVAILABLE
