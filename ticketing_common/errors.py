"""Domain errors: what went wrong in the business's words, free of any transport.

Each error carries a ``kind`` (which canonical status it becomes at the edge) and a ``reason``,
an UPPER_SNAKE constant that clients may branch on and that never changes meaning
(AIP-193 ErrorInfo.reason). The gRPC layer maps them in one place:
``ticketing_common.interceptors.ServiceInterceptor``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

# The reasons are defined once, in the contract (ticketing.common.v1.ErrorReason), and
# generated into Python by `make gen`.
from ticketing.common.v1.reasons import Reason

__all__ = ["ERROR_DOMAIN", "DomainError", "Kind", "Reason"]

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
