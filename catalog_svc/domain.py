"""Catalog rules, free of gRPC, SQL and Redis.

What an event page is made of, what a valid venue, seat map or event is, how an inventory is
generated from a seat map, and how list pages are cut and resumed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple

from catalog_svc.seat_layout import RowLayout, SeatMapLayout, SectionLayout
from ticketing_common.errors import FailedPrecondition, InvalidArgument, Reason
from ticketing_common.event_types import EVENT_TYPES
from ticketing_common.pagination import (
    decode_page_token,
    encode_page_token,
    page_size,
    parse_id,
    query_fingerprint,
)

# Part of the catalog's rules, used by its servicer and mapping.
__all__ = [
    "decode_page_token",
    "encode_page_token",
    "page_size",
    "parse_id",
    "query_fingerprint",
]

TICKET_STATUSES = ("available", "held", "booked")
MAX_SEATS_PER_ROW = 500
MAX_VENUE_CAPACITY = 200_000


# --- Venues and seat maps ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    label: str
    seats: int
    layout: RowLayout | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Section:
    name: str
    price_tier: str
    rows: tuple[Row, ...]
    # A standing (general-admission) section: this many places, no rows, no seat numbers.
    standing_capacity: int = 0
    layout: SectionLayout | None = None

    @property
    def standing(self) -> bool:
        return self.standing_capacity > 0


@dataclasses.dataclass(frozen=True, slots=True)
class SeatMap:
    sections: tuple[Section, ...]
    layout: SeatMapLayout | None = None

    @property
    def capacity(self) -> int:
        return sum(
            section.standing_capacity + sum(row.seats for row in section.rows)
            for section in self.sections
        )

    @property
    def tiers(self) -> set[str]:
        return {section.price_tier for section in self.sections}

    def validate(self) -> None:
        if not self.sections:
            raise _invalid("seat_map", "a seat map needs at least one section")
        names: set[str] = set()
        for section in self.sections:
            if not section.name or section.name in names:
                raise _invalid(
                    "seat_map", f"section names must be unique and set: {section.name!r}"
                )
            names.add(section.name)
            if not section.price_tier:
                raise _invalid("seat_map", f"section {section.name!r} needs a price_tier")
            labels: set[str] = set()
            if section.standing_capacity < 0 or section.standing_capacity > MAX_VENUE_CAPACITY:
                raise _invalid("seat_map", f"section {section.name!r}: bad standing_capacity")
            if section.standing and section.rows:
                raise _invalid(
                    "seat_map", f"standing section {section.name!r} has a capacity, not rows"
                )
            if not section.rows and not section.standing:
                raise _invalid("seat_map", f"section {section.name!r} has no rows")
            if section.layout is not None:
                section.layout.validate(f"section {section.name!r}")
            for row in section.rows:
                if not row.label or row.label in labels:
                    raise _invalid(
                        "seat_map", f"row labels in {section.name!r} must be unique and set"
                    )
                labels.add(row.label)
                if row.layout is not None:
                    row.layout.validate(f"row {section.name}/{row.label}")
                if not 0 < row.seats <= MAX_SEATS_PER_ROW:
                    raise _invalid(
                        "seat_map",
                        f"row {section.name}/{row.label} must have 1..{MAX_SEATS_PER_ROW} seats",
                    )
        if self.capacity > MAX_VENUE_CAPACITY:
            raise _invalid("seat_map", f"a venue holds at most {MAX_VENUE_CAPACITY} seats")
        if self.layout is not None:
            self.layout.validate()

    def to_document(self) -> dict[str, Any]:
        sections = []
        for s in self.sections:
            rows = []
            for r in s.rows:
                row: dict[str, Any] = {"label": r.label, "seats": r.seats}
                if r.layout is not None:
                    row["layout"] = r.layout.to_document()
                rows.append(row)
            section: dict[str, Any] = {"name": s.name, "price_tier": s.price_tier, "rows": rows}
            if s.standing:
                section["standing_capacity"] = s.standing_capacity
            if s.layout is not None:
                section["layout"] = s.layout.to_document()
            sections.append(section)
        doc: dict[str, Any] = {"sections": sections}
        if self.layout is not None:
            doc["layout"] = self.layout.to_document()
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SeatMap:
        return cls(
            tuple(
                Section(
                    s["name"],
                    s.get("price_tier", ""),
                    tuple(
                        Row(
                            r["label"],
                            int(r["seats"]),
                            RowLayout.from_document(r["layout"]) if "layout" in r else None,
                        )
                        for r in s.get("rows", [])
                    ),
                    int(s.get("standing_capacity", 0)),
                    SectionLayout.from_document(s["layout"]) if "layout" in s else None,
                )
                for s in doc.get("sections", [])
            ),
            SeatMapLayout.from_document(doc["layout"]) if "layout" in doc else None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Venue:
    id: str
    name: str
    address: str
    city: str
    region: str
    country_code: str
    latitude: float
    longitude: float
    time_zone: str
    seat_map: SeatMap
    capacity: int = 0
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None

    def validate(self) -> None:
        for field in ("name", "city"):
            if not getattr(self, field).strip():
                raise _invalid(field, f"{field} is required")
        if len(self.country_code) != 2 or not self.country_code.isalpha():
            raise _invalid("country_code", "country_code must be ISO 3166-1 alpha-2, like 'US'")
        if not -90 <= self.latitude <= 90 or not -180 <= self.longitude <= 180:
            raise _invalid("location", "latitude must be within ±90 and longitude within ±180")
        self.seat_map.validate()


@dataclasses.dataclass(frozen=True, slots=True)
class Performer:
    id: str
    name: str
    description: str = ""
    genre: str = ""
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None

    def validate(self) -> None:
        if not self.name.strip():
            raise _invalid("name", "name is required")


# --- Events --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class QueuePolicy:
    enabled: bool = False
    admission_rate_per_minute: int = 600
    max_active_users: int = 500
    admission_ttl_seconds: int = 600

    def validate(self) -> None:
        for field in ("admission_rate_per_minute", "max_active_users", "admission_ttl_seconds"):
            if getattr(self, field) <= 0:
                raise _invalid(f"queue_policy.{field}", f"queue_policy.{field} must be positive")


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    id: str
    name: str
    description: str
    type: str
    venue_id: str
    performer_id: str
    start_time: dt.datetime
    end_time: dt.datetime
    on_sale_time: dt.datetime
    queue_policy: QueuePolicy
    max_tickets_per_user: int
    currency: str
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None
    version: int = 0

    def validate(self) -> None:
        if not self.name.strip():
            raise _invalid("name", "name is required")
        if self.type not in EVENT_TYPES:
            raise _invalid("type", f"type must be one of {', '.join(EVENT_TYPES)}")
        if not self.start_time < self.end_time:
            raise _invalid("end_time", "end_time must be after start_time")
        if self.on_sale_time > self.start_time:
            raise _invalid("on_sale_time", "on_sale_time must not be after start_time")
        if not 1 <= self.max_tickets_per_user <= 100:
            raise _invalid("max_tickets_per_user", "max_tickets_per_user must be 1..100")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise _invalid("currency_code", "currency_code must be ISO 4217, like 'USD'")
        self.queue_policy.validate()


def default_end_time(start: dt.datetime) -> dt.datetime:
    return start + dt.timedelta(hours=3)


# --- Tickets -------------------------------------------------------------------------------


class Ticket(NamedTuple):
    """A ticket as a buyer sees it; status is already effective (a lapsed hold is available)."""

    id: str
    section: str
    row: str
    seat: str
    price_minor: int
    status: str
    hold_expire_time: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class TicketSummary:
    total: int = 0
    available: int = 0
    held: int = 0
    booked: int = 0
    min_available_price_minor: int | None = None

    @property
    def sold_out(self) -> bool:
        return self.available == 0


def summarize(tickets: Iterable[Ticket]) -> TicketSummary:
    counts = dict.fromkeys(TICKET_STATUSES, 0)
    cheapest: int | None = None
    for ticket in tickets:
        counts[ticket.status] += 1
        if ticket.status == "available" and (cheapest is None or ticket.price_minor < cheapest):
            cheapest = ticket.price_minor
    return TicketSummary(
        total=sum(counts.values()),
        available=counts["available"],
        held=counts["held"],
        booked=counts["booked"],
        min_available_price_minor=cheapest,
    )


def next_hold_expiry(tickets: Iterable[Ticket]) -> dt.datetime | None:
    """When the first live hold on the page lapses: the page changes then without any write."""
    expiries = [t.hold_expire_time for t in tickets if t.status == "held" and t.hold_expire_time]
    return min(expiries, default=None)


class NewTicket(NamedTuple):
    section: str
    row: str
    seat: str
    price_minor: int


def generate_inventory(seat_map: SeatMap, tier_prices_minor: dict[str, int]) -> list[NewTicket]:
    """One ticket per seat of the map, priced by its section's tier."""
    missing = sorted(seat_map.tiers - set(tier_prices_minor))
    if missing:
        raise _invalid("tier_prices_minor", f"no price for tier(s): {', '.join(missing)}")
    negative = sorted(tier for tier, price in tier_prices_minor.items() if price < 0)
    if negative:
        raise _invalid("tier_prices_minor", f"negative price for tier(s): {', '.join(negative)}")
    seated = [
        NewTicket(section.name, row.label, str(seat), tier_prices_minor[section.price_tier])
        for section in seat_map.sections
        for row in section.rows
        for seat in range(1, row.seats + 1)
    ]
    # A standing place has no row; its number only keeps the places apart (never shown).
    standing = [
        NewTicket(section.name, "", str(place), tier_prices_minor[section.price_tier])
        for section in seat_map.sections
        for place in range(1, section.standing_capacity + 1)
    ]
    return seated + standing


def ensure_no_inventory(existing_tickets: int) -> None:
    if existing_tickets:
        raise FailedPrecondition(
            f"the event already has {existing_tickets} tickets",
            reason=Reason.TICKETS_ALREADY_GENERATED,
        )


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, metadata={"field": field})


# --- Listings and retried writes ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a listing shows; ``None`` is no restriction (start times half-open)."""

    performer_id: str | None = None
    venue_id: str | None = None
    type: str | None = None
    start_after: dt.datetime | None = None
    start_before: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RequestKey:
    """Who retries what (AIP-155): a write with a ``request_id`` acts once per (user, method,
    request_id); ``fingerprint`` is the request as sent, so the same id with a different
    request is refused (REQUEST_ID_REUSED) instead of replayed."""

    user_id: str
    method: str
    request_id: str
    fingerprint: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class EventPage:
    """Everything GetEvent shows, read in one snapshot."""

    event: Event
    venue: Venue
    performer: Performer
    tickets: list[Ticket]
