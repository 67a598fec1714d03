"""The demo data's record types, shared by the generator and the loader, and its ids.

These carry the demo data's own seat-map model (``Section`` of ``SeatRow``s, written out by
``Venue.seat_map`` as the ``venues.seat_map`` document), separate from the catalog's
``catalog_svc.domain.SeatMap``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

# Every demo id is uuid5(NAMESPACE, key); the namespace itself is uuid5(URL, ".../demo-data").
NAMESPACE = uuid.UUID("3e0b1c04-e357-5026-8076-6cd9a3969523")
SEED = "ticketing-demo-v1"


def demo_id(key: str) -> uuid.UUID:
    """The stable id of a demo row: uuid5 of its key in the demo namespace."""
    return uuid.uuid5(NAMESPACE, key)


@dataclass(frozen=True, slots=True)
class SeatRow:
    label: str
    seats: int


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    price_tier: str
    rows: tuple[SeatRow, ...]
    # A standing (general-admission) section: this many places, no rows.
    standing_capacity: int = 0

    @property
    def capacity(self) -> int:
        return sum(row.seats for row in self.rows) + self.standing_capacity


@dataclass(frozen=True, slots=True)
class Venue:
    id: uuid.UUID
    key: str
    name: str
    address: str
    city: str
    region: str
    country: str
    latitude: float
    longitude: float
    timezone: str
    kind: str
    sections: tuple[Section, ...]

    @property
    def capacity(self) -> int:
        return sum(section.capacity for section in self.sections)

    def seat_map(self) -> dict[str, Any]:
        """The ``venues.seat_map`` document (see ``seat_map_capacity`` in the migrations), with
        the venue's drawing (``layouts.py``)."""
        from deploy.demo_data.layouts import layout_for  # layouts builds on Section

        layout = layout_for(self.kind, self.sections)
        sections = []
        for section in self.sections:
            shape = layout.sections[section.name]
            document: dict[str, Any] = {
                "name": section.name,
                "price_tier": section.price_tier,
                "rows": [
                    {"label": row.label, "seats": row.seats, "layout": row_layout.document()}
                    for row, row_layout in zip(section.rows, shape.rows, strict=True)
                ],
                "layout": shape.document(),
            }
            if section.standing_capacity:
                document["standing_capacity"] = section.standing_capacity
            sections.append(document)
        return {"sections": sections, "layout": layout.document()}


@dataclass(frozen=True, slots=True)
class Performer:
    id: uuid.UUID
    name: str
    description: str
    genre: str


@dataclass(frozen=True, slots=True)
class Event:
    id: uuid.UUID
    venue_id: uuid.UUID
    performer_id: uuid.UUID
    name: str
    description: str
    type: str
    start_time: datetime
    end_time: datetime
    on_sale_time: datetime
    currency: str
    # Price of one ticket in each section tier, in minor units of the currency.
    prices: dict[str, int]
    max_tickets_per_user: int = 8
    queue_enabled: bool = False
    queue_admission_rate_per_minute: int = 600
    queue_max_active: int = 500
    queue_admission_ttl_seconds: int = 600
    # None: every seat of the venue is for sale. Otherwise about this many (whole rows, spread
    # over the sections), which is how the small data set stays small.
    ticket_allocation: int | None = None


class Ticket(NamedTuple):
    """One row of ``tickets``, fields in the loader's COPY column order."""

    id: uuid.UUID
    event_id: uuid.UUID
    section: str
    row_label: str
    seat_label: str
    price_minor: int
    currency: str


TICKET_COLUMNS = Ticket._fields


@dataclass(frozen=True)
class DemoData:
    today: date
    small: bool
    venues: tuple[Venue, ...]
    performers: tuple[Performer, ...]
    events: tuple[Event, ...]
    _venue_by_id: dict[uuid.UUID, Venue] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_venue_by_id", {venue.id: venue for venue in self.venues})

    def venue(self, event: Event) -> Venue:
        return self._venue_by_id[event.venue_id]

    def event(self, event_id: uuid.UUID) -> Event:
        return next(event for event in self.events if event.id == event_id)

    def ticket_count(self, event: Event) -> int:
        """How many tickets ``tickets(event)`` yields, without producing them."""
        return sum(row.seats for _, row, _ in _allocated_rows(self.venue(event), event))

    def total_tickets(self) -> int:
        return sum(self.ticket_count(event) for event in self.events)

    def tickets(self, event: Event) -> Iterator[Ticket]:
        """The event's tickets in seat-map order: one per allocated seat, priced by tier."""
        event_id, currency = event.id, event.currency
        for section, row, first in _allocated_rows(self.venue(event), event):
            price = event.prices[section.price_tier]
            prefix = f"{section.name}/{row.label}/"
            for seat in range(first, first + row.seats):
                label = str(seat)
                yield Ticket(
                    uuid.uuid5(event_id, prefix + label),
                    event_id,
                    section.name,
                    row.label,
                    label,
                    price,
                    currency,
                )


STANDING_BLOCK = 40  # a standing section's places are allocated in blocks of this many


def ticket_rows(section: Section) -> list[tuple[SeatRow, int]]:
    """A section's rows with the number of their first seat: its rows from 1, or for a
    standing section blocks of places (row label "", places numbered on across blocks)."""
    if not section.standing_capacity:
        return [(row, 1) for row in section.rows]
    blocks = []
    for first in range(1, section.standing_capacity + 1, STANDING_BLOCK):
        blocks.append(
            (SeatRow("", min(STANDING_BLOCK, section.standing_capacity - first + 1)), first)
        )
    return blocks


def _allocated_rows(venue: Venue, event: Event) -> list[tuple[Section, SeatRow, int]]:
    """The (section, row, first seat number) triples on sale, in seat-map order.

    The whole house, or for an allocation whole rows (standing: blocks of places) taken
    round-robin over the sections (first row of every section, then second rows, ...) until
    the allocation is reached, so a small event still offers every price tier.
    """
    rows = {section.name: ticket_rows(section) for section in venue.sections}
    if event.ticket_allocation is None:
        return [(s, row, first) for s in venue.sections for row, first in rows[s.name]]
    chosen: set[tuple[str, int]] = set()
    total = 0
    depth = max(len(r) for r in rows.values())
    for index in range(depth):
        for section in venue.sections:
            mine = rows[section.name]
            if index < len(mine) and total < event.ticket_allocation:
                chosen.add((section.name, index))
                total += mine[index][0].seats
    return [
        (section, row, first)
        for section in venue.sections
        for index, (row, first) in enumerate(rows[section.name])
        if (section.name, index) in chosen
    ]
