"""Booking rules, free of gRPC, SQL, Redis and Stripe.

The one promise: a seat is never sold twice and a buyer is never charged without a ticket.
Postgres enforces the first in the adapter's conditional update; the rules here decide what a
request may ask for and what each outcome means for the buyer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Sequence

from ticketing_common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    ResourceExhausted,
)

HOLD_DURATION = dt.timedelta(minutes=10)
# However generous an event's per-user cap, one request holds at most this many seats.
MAX_TICKETS_PER_ORDER = 10


def ticket_ids(first: str, more: Iterable[str]) -> list[str]:
    """The distinct ticket ids of a request naming a first ticket and more, canonical."""
    return canonical_ticket_ids([first, *more] if first else list(more))


def canonical_ticket_ids(requested: Iterable[str]) -> list[str]:
    """The distinct ticket ids of a request, canonical, in the order given."""
    seen: dict[str, None] = {}
    for raw in requested:
        try:
            seen.setdefault(str(uuid.UUID(raw)), None)
        except (ValueError, AttributeError, TypeError):
            raise InvalidArgument(
                f"ticket ids must be UUIDs, got {str(raw)[:64]!r}",
                reason=Reason.MALFORMED_ID,
                metadata={"field": "ticket_id"},
            ) from None
    if not seen:
        raise InvalidArgument(
            "name at least one ticket in ticket_id", metadata={"field": "ticket_id"}
        )
    if len(seen) > MAX_TICKETS_PER_ORDER:
        raise ResourceExhausted(
            f"at most {MAX_TICKETS_PER_ORDER} tickets per order",
            reason=Reason.LIMIT_EXCEEDED,
            metadata={"limit": str(MAX_TICKETS_PER_ORDER)},
        )
    return list(seen)


@dataclasses.dataclass(frozen=True, slots=True)
class SaleWindow:
    """What booking needs to know about the event a request is for."""

    event_id: str
    on_sale_time: dt.datetime
    start_time: dt.datetime
    queue_enabled: bool
    max_tickets_per_user: int

    def ensure_open(self, now: dt.datetime) -> None:
        if now < self.on_sale_time:
            raise self.not_open()
        if now >= self.start_time:
            raise self.closed()

    def ensure_within_limit(self, already_mine: int, requested_new: int) -> None:
        """A user may hold or own at most max_tickets_per_user tickets of the event."""
        if already_mine + requested_new > self.max_tickets_per_user:
            raise self.over_limit(already_mine)

    def not_open(self) -> FailedPrecondition:
        return FailedPrecondition(
            f"tickets go on sale at {self.on_sale_time.isoformat()}",
            reason=Reason.SALE_NOT_OPEN,
            metadata={"on_sale_time": self.on_sale_time.isoformat()},
        )

    def closed(self) -> FailedPrecondition:
        return FailedPrecondition(
            "the event has started; sales are closed", reason=Reason.SALE_CLOSED
        )

    def over_limit(self, already_mine: int) -> ResourceExhausted:
        return ResourceExhausted(
            f"at most {self.max_tickets_per_user} tickets per person for this event; "
            f"you already hold or own {already_mine}",
            reason=Reason.LIMIT_EXCEEDED,
            metadata={"limit": str(self.max_tickets_per_user), "already": str(already_mine)},
        )


def single_event(event_ids: Sequence[str], wanted: int, found: int) -> str:
    if found < wanted:
        raise _not_found()
    if len(set(event_ids)) != 1:
        raise _mixed_events()
    return event_ids[0]


def _not_found() -> FailedPrecondition:
    return FailedPrecondition("one or more tickets do not exist", reason=Reason.TICKET_NOT_FOUND)


def _mixed_events() -> InvalidArgument:
    return InvalidArgument(
        "all tickets of one order must be for the same event", metadata={"field": "ticket_ids"}
    )


class HoldOutcome(enum.Enum):
    """What Postgres decided about a hold (the codes of the ``hold_tickets`` function)."""

    HELD = "HELD"
    TICKET_NOT_FOUND = "TICKET_NOT_FOUND"
    MIXED_EVENTS = "MIXED_EVENTS"
    SALE_NOT_OPEN = "SALE_NOT_OPEN"
    SALE_CLOSED = "SALE_CLOSED"
    NOT_ADMITTED = "NOT_ADMITTED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    TICKET_UNAVAILABLE = "TICKET_UNAVAILABLE"
    # Only from ``hold_best_available``, which picks the seats itself.
    EVENT_NOT_FOUND = "EVENT_NOT_FOUND"
    QUANTITY_OVER_LIMIT = "QUANTITY_OVER_LIMIT"
    UNKNOWN_PRICE_TIER = "UNKNOWN_PRICE_TIER"
    UNKNOWN_SECTION = "UNKNOWN_SECTION"
    STANDING_SECTION = "STANDING_SECTION"
    NO_ADJACENT_SEATS = "NO_ADJACENT_SEATS"


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """A seat Postgres holds for the buyer."""

    ticket_id: str
    price_minor: int
    currency: str
    hold_expire_time: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class HoldDecision:
    """What the ``hold_tickets`` function decided, with the facts that explain a refusal."""

    outcome: HoldOutcome
    window: SaleWindow | None
    already_mine: int
    holds: list[Hold]
    # For TICKET_UNAVAILABLE: the seats of the order that could have been had.
    obtainable: list[str]


@dataclasses.dataclass(frozen=True, slots=True)
class BestDecision:
    """What the ``hold_best_available`` function decided (the seats it picked, in seat order)."""

    decision: HoldDecision
    # For NO_ADJACENT_SEATS and TICKET_UNAVAILABLE: the available seats matching the order.
    seats_remaining: int


def hold_refused(
    outcome: HoldOutcome,
    window: SaleWindow | None,
    already_mine: int,
    wanted: Sequence[str],
    obtainable: Sequence[str],
) -> DomainError:
    """The buyer's answer to a refused hold; the same errors as the checks above give.
    (NOT_ADMITTED is explained by ``admission.verify``, which knows what is wrong with the
    token.)"""
    if outcome is HoldOutcome.TICKET_NOT_FOUND:
        return _not_found()
    if outcome is HoldOutcome.MIXED_EVENTS:
        return _mixed_events()
    if outcome is HoldOutcome.TICKET_UNAVAILABLE:
        return unavailable(sorted(set(wanted) - set(obtainable)))
    assert window is not None, outcome
    if outcome is HoldOutcome.SALE_NOT_OPEN:
        return window.not_open()
    if outcome is HoldOutcome.SALE_CLOSED:
        return window.closed()
    if outcome is HoldOutcome.LIMIT_EXCEEDED:
        return window.over_limit(already_mine)
    if outcome is HoldOutcome.NOT_ADMITTED:
        return PermissionDenied(
            "this sale goes through the waiting queue: join it to get an admission",
            reason=Reason.NOT_ADMITTED,
        )
    raise ValueError(f"not a refusal: {outcome}")


def unavailable(ticket_ids_missing: Sequence[str]) -> FailedPrecondition:
    return FailedPrecondition(
        "some of these tickets were just taken by someone else",
        reason=Reason.TICKET_UNAVAILABLE,
        metadata={"ticket_ids": ",".join(ticket_ids_missing[:MAX_TICKETS_PER_ORDER])},
    )


@dataclasses.dataclass(frozen=True, slots=True)
class BestSeatsOrder:
    """A "best available" request: quantity adjacent seats in one row, optionally only of one
    price tier and/or one section (None: any)."""

    event_id: str
    quantity: int
    price_tier: str | None
    section: str | None
    # Numbered seats only: no standing section.
    seated_only: bool = False


def best_seats_order(
    event_id: str, quantity: int, price_tier: str, section: str, seated_only: bool = False
) -> BestSeatsOrder:
    """The request checked for what can be told without the event; the event's own limits
    (its per-user cap, its tiers and sections) are checked where the seats are held."""
    try:
        event = str(uuid.UUID(event_id))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(
            f"event_id must be a UUID, got {str(event_id)[:64]!r}",
            reason=Reason.MALFORMED_ID,
            metadata={"field": "event_id"},
        ) from None
    if quantity < 1:
        raise InvalidArgument(
            f"quantity must be at least 1, got {quantity}", metadata={"field": "quantity"}
        )
    if quantity > MAX_TICKETS_PER_ORDER:
        raise InvalidArgument(
            f"at most {MAX_TICKETS_PER_ORDER} seats per order, asked for {quantity}",
            metadata={"field": "quantity", "limit": str(MAX_TICKETS_PER_ORDER)},
        )
    return BestSeatsOrder(
        event, quantity, price_tier.strip() or None, section.strip() or None, seated_only
    )


def best_seats_refused(
    outcome: HoldOutcome,
    order: BestSeatsOrder,
    window: SaleWindow | None,
    already_mine: int,
    seats_remaining: int,
) -> DomainError:
    """The buyer's answer to a refused "best available" hold."""
    if outcome is HoldOutcome.EVENT_NOT_FOUND:
        return NotFound(f"no event {order.event_id}", reason=Reason.EVENT_NOT_FOUND)
    if outcome is HoldOutcome.QUANTITY_OVER_LIMIT:
        assert window is not None
        return InvalidArgument(
            f"at most {window.max_tickets_per_user} tickets per person for this event, "
            f"asked for {order.quantity}",
            metadata={"field": "quantity", "limit": str(window.max_tickets_per_user)},
        )
    if outcome is HoldOutcome.UNKNOWN_PRICE_TIER:
        return InvalidArgument(
            f"the venue has no price tier {order.price_tier!r}",
            metadata={"field": "price_tier"},
        )
    if outcome is HoldOutcome.UNKNOWN_SECTION:
        tier = f" with price tier {order.price_tier!r}" if order.price_tier else ""
        return InvalidArgument(
            f"the venue has no section {order.section!r}{tier}", metadata={"field": "section"}
        )
    if outcome is HoldOutcome.STANDING_SECTION:
        return InvalidArgument(
            f"section {order.section!r} is standing room, and the order asks for seats only",
            metadata={"field": "section"},
        )
    if outcome is HoldOutcome.NO_ADJACENT_SEATS:
        return FailedPrecondition(
            f"no {order.quantity} adjacent seats in one row are left; "
            f"{seats_remaining} single seats remain",
            reason=Reason.NO_ADJACENT_SEATS,
            metadata={"seats_remaining": str(seats_remaining), "quantity": str(order.quantity)},
        )
    if outcome is HoldOutcome.TICKET_UNAVAILABLE:
        return FailedPrecondition(
            "every block of seats that fits was just being taken by someone else; retry",
            reason=Reason.TICKET_UNAVAILABLE,
            metadata={"seats_remaining": str(seats_remaining)},
        )
    return hold_refused(outcome, window, already_mine, [], [])


@dataclasses.dataclass(frozen=True, slots=True)
class HeldTicket:
    """A ticket as confirm sees it before paying."""

    id: str
    event_id: str
    status: str
    holder_user_id: str | None
    hold_expire_time: dt.datetime | None
    price_minor: int
    currency: str


def ensure_payable(
    user_id: str, tickets: Sequence[HeldTicket], wanted: int, now: dt.datetime
) -> None:
    """Only the holder pays, only for live holds. Someone else's hold is not revealed."""
    if len(tickets) < wanted:
        raise FailedPrecondition("one or more tickets do not exist", reason=Reason.TICKET_NOT_FOUND)
    for ticket in tickets:
        if ticket.holder_user_id != user_id or ticket.status != "held":
            raise PermissionDenied(
                "you do not hold this ticket; reserve it first",
                reason=Reason.NOT_HOLDER,
                metadata={"ticket_id": ticket.id},
            )
        if ticket.hold_expire_time is None or ticket.hold_expire_time <= now:
            raise FailedPrecondition(
                "your hold on this ticket has expired; reserve it again",
                reason=Reason.HOLD_EXPIRED,
                metadata={"ticket_id": ticket.id},
            )
    if len({t.currency for t in tickets}) != 1:
        raise InvalidArgument("tickets priced in different currencies cannot share a payment")


class PaymentOutcome(enum.Enum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentResult:
    outcome: PaymentOutcome
    provider_payment_id: str | None
    failure_reason: str = ""


def confirm_refused(
    user_id: str, tickets: Sequence[HeldTicket], wanted: int, now: dt.datetime
) -> DomainError:
    """Why the store refused to take payment for these tickets (it checks what
    ``ensure_payable`` does, with its own clock: a hold it saw lapse is expired)."""
    try:
        ensure_payable(user_id, tickets, wanted, now)
    except DomainError as refusal:
        return refusal
    lapsed = min(tickets, key=lambda t: t.hold_expire_time or now) if tickets else None
    return FailedPrecondition(
        "your hold on this ticket has expired; reserve it again",
        reason=Reason.HOLD_EXPIRED,
        metadata={"ticket_id": lapsed.id} if lapsed else {},
    )


def payment_idempotency_key(booking_id: str, payment_method_id: str) -> str:
    """One charge per booking and card: a retry reuses it, another card gets a new one."""
    return f"booking-{booking_id}-{payment_method_id}"


def declined(result: PaymentResult) -> FailedPrecondition:
    return FailedPrecondition(
        f"the payment was declined: {result.failure_reason or 'no reason given'}; "
        "your hold is kept, try another card",
        reason=Reason.PAYMENT_DECLINED,
    )


def refunded_after_lost_hold(refund_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        "your hold ran out while paying and the tickets went to someone else; "
        "the payment has been refunded in full",
        reason=Reason.PAYMENT_REFUNDED,
        metadata={"refund_id": refund_id},
    )


# --- the values the use cases take and return (booking_svc/mapping.py translates them) -------


@dataclasses.dataclass(frozen=True, slots=True)
class Money:
    currency: str
    amount_minor: int


class ReservationState(enum.Enum):
    HELD = "held"
    CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True, slots=True)
class Reservation:
    """Seats held for a buyer (or, once cancelled, given back)."""

    ticket_ids: tuple[str, ...]
    event_id: str
    user_id: str
    state: ReservationState
    # Set while held: when the first of the holds lapses, and what the seats cost.
    expire_time: dt.datetime | None = None
    total: Money | None = None


def held_reservation(user_id: str, event_id: str, holds: Sequence[Hold]) -> Reservation:
    return Reservation(
        ticket_ids=tuple(h.ticket_id for h in holds),
        event_id=event_id,
        user_id=user_id,
        state=ReservationState.HELD,
        expire_time=min(h.hold_expire_time for h in holds),
        total=Money(holds[0].currency, sum(h.price_minor for h in holds)),
    )


class BookingStatus(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class PaymentStatus(enum.Enum):
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


@dataclasses.dataclass(frozen=True, slots=True)
class Payment:
    """The latest payment attempt of a booking."""

    id: str
    provider_payment_id: str | None
    status: PaymentStatus
    refund_id: str | None = None
    failure_reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Booking:
    id: str
    user_id: str
    event_id: str
    status: BookingStatus
    total: Money
    ticket_ids: tuple[str, ...]
    create_time: dt.datetime
    confirm_time: dt.datetime | None = None
    payment: Payment | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A payment attempt as the use cases need it."""

    id: str
    booking_id: str
    provider_payment_id: str | None
    status: PaymentStatus


class ConfirmOutcome(enum.Enum):
    """What the store decided when a confirm began (migration 0017's confirm_begin)."""

    PAYABLE = "PAYABLE"  # a payment attempt is recorded: charge it (unless taken already)
    FINISHED = "FINISHED"  # the request_id names a booking no longer pending: replay it
    REFUSED = "REFUSED"  # not payable; nothing written (confirm_refused says why)


@dataclasses.dataclass(frozen=True, slots=True)
class ConfirmStart:
    """The first phase of a confirm, decided and committed before any card is charged."""

    outcome: ConfirmOutcome
    event_id: str | None
    tickets: list[HeldTicket]
    # FINISHED: the booking to replay.
    booking: Booking | None = None
    # PAYABLE: the attempt to charge, its idempotency key and amount.
    payment: PaymentRecord | None = None
    idempotency_key: str = ""
    total: Money | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Sale:
    """The last phase: ``sold`` of ``wanted`` seats (sold < wanted: the hold was lost and
    nothing was sold) and the booking as it is after it."""

    sold: int
    wanted: int
    booking: Booking | None

    @property
    def complete(self) -> bool:
        return self.wanted > 0 and self.sold == self.wanted


class PaymentEventKind(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A verified notification of the payment provider about one of its payments."""

    kind: PaymentEventKind
    provider_payment_id: str
    # The booking the payment was made for, as told to the provider when charging.
    booking_id: str | None


# Commands: what a buyer asks for, as read from the request (not yet checked: the use cases
# apply the rules above to them).


@dataclasses.dataclass(frozen=True, slots=True)
class ReserveTickets:
    ticket_ids: tuple[str, ...]
    admission_token: str = ""
    request_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ReserveBestAvailable:
    event_id: str
    quantity: int
    price_tier: str = ""
    section: str = ""
    admission_token: str = ""
    request_id: str = ""
    seated_only: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ConfirmBooking:
    ticket_ids: tuple[str, ...]
    payment_method_id: str
    request_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class CancelReservation:
    ticket_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class BookingsPage:
    """One page of a user's bookings, newest first; ``more`` if older ones follow."""

    bookings: list[Booking]
    more: bool
