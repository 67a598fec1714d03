# ruff: noqa: S311 - random.Random here makes plausible demo data from fixed seeds, on purpose.
"""Demo data: a deterministic, realistic catalog with its tickets, and the loader for it.

Two halves that share nothing but the record types:

* the generator (``generate`` and the pure functions under it) builds venues, performers and
  events, and yields tickets lazily; no I/O, and no clock unless ``today`` is left out;
* the loader (``seed``) writes that data with psycopg: the small tables with plain inserts, the
  tickets with ``COPY ... FROM STDIN``, one transaction per batch of events.

Determinism: every id is a uuid5 of a stable key (a venue's, performer's or event's name or
slot; a ticket's seat), and every random choice comes from a ``random.Random`` seeded with a
fixed string, one per concern so that changing one list does not reshuffle the others. Times
are anchored to the current UTC day, so the events always lie over the next six months; ids do
not depend on the day.

Well-known rows (the README points at them; ``tests/unit/test_demo_data.py`` pins the ids):

* ``HOT_EVENT_ID`` ``3038521a-4098-53b8-a8fa-76a0ca81e121``: "Aurora Vale: The Northern Lights
  Tour" at Wembley Stadium, the queue-enabled hot sale. It goes on sale tomorrow (UTC day after
  the seed) at 10:00 London time; the queue admits 600 a minute, 500 at a time, for 600 s.
* ``DEMO_EVENT_ID`` ``03a67087-67cc-5c61-b94c-c5f5e083f9f7``: "Ember & Ash: Live at the Royal
  Albert Hall", on sale since a month before the seed, no queue: the event for docs and tests.

The full set has about 1.2 million tickets; ``small=True`` keeps every venue and performer but
only 20 events (the two above among them) with a small allocation of each house, about 5,000
tickets.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ticketing_common.event_types import EVENT_TYPES

log = logging.getLogger(__name__)

# Every demo id is uuid5(NAMESPACE, key); the namespace itself is uuid5(URL, ".../demo-data").
NAMESPACE = uuid.UUID("3e0b1c04-e357-5026-8076-6cd9a3969523")
SEED = "ticketing-demo-v1"

PRICE_TIERS = ("vip", "premium", "standard", "value")
HORIZON_DAYS = 183


def demo_id(key: str) -> uuid.UUID:
    """The stable id of a demo row: uuid5 of its key in the demo namespace."""
    return uuid.uuid5(NAMESPACE, key)


# --------------------------------------------------------------------------------------------
# Record types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeatRow:
    label: str
    seats: int


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    price_tier: str
    rows: tuple[SeatRow, ...]

    @property
    def capacity(self) -> int:
        return sum(row.seats for row in self.rows)


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
        """The ``venues.seat_map`` document (see ``seat_map_capacity`` in the migrations)."""
        return {
            "sections": [
                {
                    "name": section.name,
                    "price_tier": section.price_tier,
                    "rows": [{"label": row.label, "seats": row.seats} for row in section.rows],
                }
                for section in self.sections
            ]
        }


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
        return sum(row.seats for _, row in _allocated_rows(self.venue(event), event))

    def total_tickets(self) -> int:
        return sum(self.ticket_count(event) for event in self.events)

    def tickets(self, event: Event) -> Iterator[Ticket]:
        """The event's tickets in seat-map order: one per allocated seat, priced by tier."""
        event_id, currency = event.id, event.currency
        for section, row in _allocated_rows(self.venue(event), event):
            price = event.prices[section.price_tier]
            prefix = f"{section.name}/{row.label}/"
            for seat in range(1, row.seats + 1):
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


def _allocated_rows(venue: Venue, event: Event) -> list[tuple[Section, SeatRow]]:
    """The (section, row) pairs on sale, in seat-map order.

    The whole house, or for an allocation whole rows taken round-robin over the sections
    (first row of every section, then second rows, ...) until the allocation is reached, so
    a small event still offers every price tier.
    """
    if event.ticket_allocation is None:
        return [(section, row) for section in venue.sections for row in section.rows]
    chosen: set[tuple[str, str]] = set()
    total = 0
    depth = max(len(section.rows) for section in venue.sections)
    for index in range(depth):
        for section in venue.sections:
            if index < len(section.rows) and total < event.ticket_allocation:
                chosen.add((section.name, section.rows[index].label))
                total += section.rows[index].seats
    return [
        (section, row)
        for section in venue.sections
        for row in section.rows
        if (section.name, row.label) in chosen
    ]


# --------------------------------------------------------------------------------------------
# Venues: real places, generated seat maps
# --------------------------------------------------------------------------------------------


class _VenueSpec(NamedTuple):
    key: str
    name: str
    address: str
    city: str
    region: str
    country: str
    latitude: float
    longitude: float
    timezone: str
    kind: str  # stadium, arena, amphitheater, theater, hall, club
    scale: float  # relative size within its kind
    sport: str | None  # the home sport, for venues that host sports


# fmt: off
VENUE_SPECS: tuple[_VenueSpec, ...] = (
    # key, name, address, city, region, country, latitude, longitude, timezone,
    # kind, scale (size within its kind), sport (hosted at home, if any)
    # Stadiums
    _VenueSpec("wembley-stadium", "Wembley Stadium",
               "Wembley, London HA9 0WS", "London", "England", "GB",
               51.556, -0.2796, "Europe/London", "stadium", 1.2, "football"),
    _VenueSpec("tokyo-dome", "Tokyo Dome", "1-3-61 Koraku, Bunkyo City", "Tokyo", "Tokyo", "JP",
               35.7056, 139.7519, "Asia/Tokyo", "stadium", 0.9, "baseball"),
    _VenueSpec("estadio-azteca", "Estadio Azteca",
               "Calzada de Tlalpan 3465, Coyoacán", "Mexico City", "CDMX", "MX",
               19.3029, -99.1505, "America/Mexico_City", "stadium", 1.1, "football"),
    _VenueSpec("melbourne-cricket-ground", "Melbourne Cricket Ground",
               "Brunton Ave, Richmond VIC 3002", "Melbourne", "Victoria", "AU",
               -37.82, 144.9834, "Australia/Melbourne", "stadium", 1.0, "australian football"),
    # Arenas
    _VenueSpec("madison-square-garden", "Madison Square Garden",
               "4 Pennsylvania Plaza", "New York", "NY", "US",
               40.7505, -73.9934, "America/New_York", "arena", 1.0, "basketball"),
    _VenueSpec("the-o2-arena", "The O2 Arena",
               "Peninsula Square, London SE10 0DX", "London", "England", "GB",
               51.503, 0.0032, "Europe/London", "arena", 1.1, "basketball"),
    _VenueSpec("crypto-com-arena", "Crypto.com Arena",
               "1111 S Figueroa St", "Los Angeles", "CA", "US",
               34.043, -118.2673, "America/Los_Angeles", "arena", 1.0, "basketball"),
    _VenueSpec("united-center", "United Center", "1901 W Madison St", "Chicago", "IL", "US",
               41.8807, -87.6742, "America/Chicago", "arena", 1.1, "ice hockey"),
    _VenueSpec("accor-arena", "Accor Arena", "8 Boulevard de Bercy", "Paris", "Île-de-France", "FR",
               48.8386, 2.3786, "Europe/Paris", "arena", 0.95, "basketball"),
    _VenueSpec("ziggo-dome", "Ziggo Dome", "De Passage 100", "Amsterdam", "North Holland", "NL",
               52.3136, 4.9372, "Europe/Amsterdam", "arena", 0.95, None),
    _VenueSpec("scotiabank-arena", "Scotiabank Arena", "40 Bay St", "Toronto", "ON", "CA",
               43.6435, -79.3791, "America/Toronto", "arena", 1.0, "ice hockey"),
    _VenueSpec("singapore-indoor-stadium", "Singapore Indoor Stadium",
               "2 Stadium Walk", "Singapore", "", "SG",
               1.3006, 103.8745, "Asia/Singapore", "arena", 0.75, "basketball"),
    # Amphitheaters
    _VenueSpec("red-rocks-amphitheatre", "Red Rocks Amphitheatre",
               "18300 W Alameda Pkwy", "Morrison", "CO", "US",
               39.6654, -105.2057, "America/Denver", "amphitheater", 0.9, None),
    _VenueSpec("hollywood-bowl", "Hollywood Bowl", "2301 N Highland Ave", "Los Angeles", "CA", "US",
               34.1122, -118.3391, "America/Los_Angeles", "amphitheater", 1.3, None),
    # Concert halls
    _VenueSpec("royal-albert-hall", "Royal Albert Hall",
               "Kensington Gore, London SW7 2AP", "London", "England", "GB",
               51.5009, -0.1774, "Europe/London", "hall", 1.3, None),
    _VenueSpec("sydney-opera-house", "Sydney Opera House", "Bennelong Point", "Sydney", "NSW", "AU",
               -33.8568, 151.2153, "Australia/Sydney", "hall", 1.1, None),
    _VenueSpec("elbphilharmonie", "Elbphilharmonie",
               "Platz der Deutschen Einheit 1", "Hamburg", "Hamburg", "DE",
               53.5413, 9.9841, "Europe/Berlin", "hall", 1.0, None),
    # Theaters
    _VenueSpec("radio-city-music-hall", "Radio City Music Hall",
               "1260 6th Ave", "New York", "NY", "US",
               40.76, -73.9799, "America/New_York", "theater", 1.8, None),
    _VenueSpec("teatro-alla-scala", "Teatro alla Scala",
               "Via Filodrammatici 2", "Milan", "Lombardy", "IT",
               45.4674, 9.1895, "Europe/Rome", "theater", 1.1, None),
    _VenueSpec("london-palladium", "London Palladium",
               "8 Argyll St, London W1F 7TF", "London", "England", "GB",
               51.5142, -0.1402, "Europe/London", "theater", 1.2, None),
    _VenueSpec("teatro-colon", "Teatro Colón", "Cerrito 628", "Buenos Aires", "CABA", "AR",
               -34.6011, -58.3835, "America/Argentina/Buenos_Aires", "theater", 1.4, None),
    # Clubs
    _VenueSpec("the-fillmore", "The Fillmore", "1805 Geary Blvd", "San Francisco", "CA", "US",
               37.784, -122.433, "America/Los_Angeles", "club", 1.2, None),
    _VenueSpec("paradiso", "Paradiso", "Weteringschans 6-8", "Amsterdam", "North Holland", "NL",
               52.3622, 4.8838, "Europe/Amsterdam", "club", 1.4, None),
    _VenueSpec("koko", "KOKO", "1A Camden High St, London NW1 7JE", "London", "England", "GB",
               51.5347, -0.1382, "Europe/London", "club", 1.3, None),
    _VenueSpec("metro-chicago", "Metro", "3730 N Clark St", "Chicago", "IL", "US",
               41.9497, -87.6587, "America/Chicago", "club", 1.0, None),
)
# fmt: on


def _letters(count: int) -> list[str]:
    """Theater row labels: A..Z (no I or O, as many houses do), then AA, BB, ..."""
    alphabet = [c for c in "ABCDEFGHJKLMNPQRSTUVWXYZ"]
    return [alphabet[i % len(alphabet)] * (i // len(alphabet) + 1) for i in range(count)]


def _numbers(count: int) -> list[str]:
    return [str(i) for i in range(1, count + 1)]


def _rows(labels: Iterable[str], seats: Iterable[int]) -> tuple[SeatRow, ...]:
    return tuple(SeatRow(label, n) for label, n in zip(labels, seats, strict=True))


def _stadium(rng: random.Random, scale: float) -> list[Section]:
    sections = []
    floor_rows = round(30 * scale)
    for letter, tier in zip(
        "ABCDEF", ("vip", "vip", "premium", "premium", "standard", "standard"), strict=True
    ):
        sections.append(
            Section(f"Floor {letter}", tier, _rows(_numbers(floor_rows), [40] * floor_rows))
        )
    lower_rows = round(25 * scale)
    for number in range(101, 129):
        base = rng.randint(22, 26)
        # The sideline sections in the middle of each long side are the better seats.
        tier = "premium" if (number - 101) % 14 in range(4, 10) else "standard"
        sections.append(
            Section(
                str(number),
                tier,
                _rows(_numbers(lower_rows), [base + row // 5 for row in range(lower_rows)]),
            )
        )
    for number in range(201, 217):
        sections.append(Section(str(number), "vip", _rows(_numbers(10), [20] * 10)))
    upper_rows = round(28 * scale)
    for number in range(301, 335):
        base = rng.randint(24, 28)
        sections.append(
            Section(
                str(number),
                "value",
                _rows(_numbers(upper_rows), [base + row // 7 for row in range(upper_rows)]),
            )
        )
    return sections


def _arena(rng: random.Random, scale: float) -> list[Section]:
    sections = []
    floor_rows = round(18 * scale)
    for letter, tier in zip("ABCD", ("vip", "vip", "premium", "premium"), strict=True):
        sections.append(
            Section(f"Floor {letter}", tier, _rows(_numbers(floor_rows), [30] * floor_rows))
        )
    lower_rows = round(18 * scale)
    for number in range(101, 121):
        base = rng.randint(18, 22)
        tier = "premium" if (number - 101) % 10 in range(3, 7) else "standard"
        sections.append(
            Section(
                str(number),
                tier,
                _rows(_numbers(lower_rows), [base + row // 6 for row in range(lower_rows)]),
            )
        )
    upper_rows = round(12 * scale)
    for number in range(201, 225):
        sections.append(
            Section(str(number), "value", _rows(_numbers(upper_rows), [22] * upper_rows))
        )
    return sections


def _amphitheater(rng: random.Random, scale: float) -> list[Section]:
    sections = [Section("Pit", "vip", _rows(_numbers(8), [40] * 8))]
    for area, tier, rows, seats in (
        ("Orchestra", "premium", 20, 36),
        ("Terrace", "standard", 25, 40),
        ("Upper Bench", "value", round(30 * scale), 45),
    ):
        for side in ("Left", "Centre", "Right"):
            width = seats + rng.randint(-4, 4)
            sections.append(Section(f"{area} {side}", tier, _rows(_numbers(rows), [width] * rows)))
    return sections


def _theater(rng: random.Random, scale: float) -> list[Section]:
    stalls = round(21 * scale)
    return [
        Section(
            "Stalls", "premium", _rows(_letters(stalls), [26 + row // 3 for row in range(stalls)])
        ),
        Section(
            "Dress Circle", "vip", _rows(_letters(round(11 * scale)), [30] * round(11 * scale))
        ),
        Section(
            "Upper Circle",
            "standard",
            _rows(_letters(round(12 * scale)), [30 + rng.randint(0, 4)] * round(12 * scale)),
        ),
        Section("Balcony", "value", _rows(_letters(8), [28] * 8)),
        Section("Boxes", "vip", _rows([f"Box {n}" for n in range(1, 9)], [4] * 8)),
    ]


def _hall(rng: random.Random, scale: float) -> list[Section]:
    return [
        Section("Arena", "premium", _rows(_letters(round(16 * scale)), [30] * round(16 * scale))),
        Section("Stalls Left", "premium", _rows(_letters(14), [20 + rng.randint(0, 3)] * 14)),
        Section("Stalls Right", "premium", _rows(_letters(14), [20 + rng.randint(0, 3)] * 14)),
        Section("Grand Tier", "vip", _rows(_letters(6), [25] * 6)),
        Section("Circle", "standard", _rows(_letters(round(13 * scale)), [40] * round(13 * scale))),
        Section("Gallery", "value", _rows(_letters(6), [45] * 6)),
    ]


def _club(rng: random.Random, scale: float) -> list[Section]:
    # Standing room is one numbered row: a GA ticket is "entry n" rather than a seat.
    return [
        Section("General Admission", "standard", (SeatRow("GA", round(800 * scale)),)),
        Section("Balcony", "premium", _rows(_letters(6), [24 + rng.randint(0, 4)] * 6)),
        Section("Mezzanine", "vip", _rows(_letters(2), [12] * 2)),
    ]


_SEAT_MAPS = {
    "stadium": _stadium,
    "arena": _arena,
    "amphitheater": _amphitheater,
    "theater": _theater,
    "hall": _hall,
    "club": _club,
}


def generate_venues() -> tuple[Venue, ...]:
    venues = []
    for spec in VENUE_SPECS:
        rng = random.Random(f"{SEED}/venue/{spec.key}")
        sections = _SEAT_MAPS[spec.kind](rng, spec.scale)
        venues.append(
            Venue(
                id=demo_id(f"venue/{spec.key}"),
                key=spec.key,
                name=spec.name,
                address=spec.address,
                city=spec.city,
                region=spec.region,
                country=spec.country,
                latitude=spec.latitude,
                longitude=spec.longitude,
                timezone=spec.timezone,
                kind=spec.kind,
                sections=tuple(sections),
            )
        )
    return tuple(venues)


# --------------------------------------------------------------------------------------------
# Performers: generated, plausible names across genres
# --------------------------------------------------------------------------------------------

_FIRST = (
    "Maya",
    "Leo",
    "Amara",
    "Jonas",
    "Sofia",
    "Mateo",
    "Priya",
    "Elias",
    "Noor",
    "Hugo",
    "Ines",
    "Kenji",
    "Zara",
    "Callum",
    "Lucia",
    "Tomas",
    "Aiko",
    "Dario",
    "Freya",
    "Omar",
    "Chloe",
    "Rafael",
    "Yara",
    "Felix",
    "Nadia",
    "Arjun",
    "Elena",
    "Kofi",
    "Isla",
    "Mina",
    "Theo",
    "Valeria",
    "Samir",
    "Astrid",
    "Diego",
    "Hana",
    "Jude",
    "Camila",
    "Ravi",
    "Lena",
)
_LAST = (
    "Lindqvist",
    "Okafor",
    "Moreau",
    "Castellano",
    "Haddad",
    "Whitlock",
    "Nakamura",
    "Brennan",
    "Iversen",
    "Delacroix",
    "Mensah",
    "Albright",
    "Varga",
    "Sorensen",
    "Quintero",
    "Achterberg",
    "Kowalski",
    "Fairweather",
    "Rossi",
    "Takeda",
    "Ferreira",
    "Lachance",
    "Osei",
    "Marchetti",
    "Halloran",
    "Devereux",
    "Novak",
    "Santiago",
    "Bergström",
    "Ashdown",
    "Kaur",
    "Mbeki",
)
_ADJECTIVES = (
    "Velvet",
    "Neon",
    "Paper",
    "Silver",
    "Electric",
    "Golden",
    "Hollow",
    "Midnight",
    "Crimson",
    "Wild",
    "Glass",
    "Copper",
    "Lunar",
    "Static",
    "Northern",
    "Quiet",
    "Feral",
    "Amber",
    "Restless",
    "Crooked",
    "Little",
    "Burning",
    "Cold",
    "Vivid",
)
_NOUNS = (
    "Harbors",
    "Foxes",
    "Lanterns",
    "Echoes",
    "Pilots",
    "Rivers",
    "Engines",
    "Satellites",
    "Wolves",
    "Tides",
    "Orchards",
    "Giants",
    "Ghosts",
    "Machines",
    "Comets",
    "Strangers",
    "Kites",
    "Horses",
    "Atlas",
    "Mirrors",
    "Anthems",
    "Rooftops",
    "Sparrows",
    "Dunes",
)
_STAGE_NAMES = (
    "Lumi",
    "Saffira",
    "Orin",
    "Kestrel",
    "Amaru",
    "Velia",
    "Tavi",
    "Soleil",
    "Nyra",
    "Caspian",
    "Ziv",
    "Marlo",
    "Ondine",
    "Juno Ray",
    "Sable",
    "Elio",
)
_HIP_HOP_WORDS = (
    "Kairo",
    "Blaze",
    "Tempo",
    "Vega",
    "Nyx",
    "Onyx",
    "Drift",
    "Cipher",
    "Jetset",
    "Reign",
    "Prophet",
    "Halo",
    "Rook",
    "Solo",
)
_KPOP_SYLLABLES = ("LU", "MI", "NA", "VI", "KA", "RO", "SE", "ON", "YU", "RA", "XI", "ZE")
_CITIES_OF_ORIGIN = (
    "Manchester",
    "Melbourne",
    "Atlanta",
    "Lagos",
    "Montreal",
    "Seoul",
    "Bogotá",
    "Nashville",
    "Berlin",
    "Glasgow",
    "Austin",
    "Stockholm",
    "Cape Town",
    "Lyon",
    "Osaka",
    "Detroit",
)


def _music_name(genre: str, rng: random.Random) -> str:
    person = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    band = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    match genre:
        case "pop" | "r&b":
            return rng.choice((person, rng.choice(_STAGE_NAMES), person))
        case "rock" | "indie" | "metal":
            return rng.choice((f"The {band}", band))
        case "hip-hop":
            prefix = rng.choice(("Lil", "Young", "MC", "Big", rng.choice(_FIRST)))
            return f"{prefix} {rng.choice(_HIP_HOP_WORDS)}"
        case "electronic":
            return rng.choice(
                (
                    f"DJ {rng.choice(_HIP_HOP_WORDS)}",
                    f"{rng.choice(_ADJECTIVES)}{rng.choice(_NOUNS).lower()}",
                    f"{rng.choice(_STAGE_NAMES)} & {rng.choice(_STAGE_NAMES)}",
                )
            )
        case "country":
            return rng.choice((person, f"The {rng.choice(_LAST)} Brothers", person))
        case "latin":
            return rng.choice((person, f"Los {rng.choice(_NOUNS)}"))
        case "k-pop":
            syllables = rng.sample(_KPOP_SYLLABLES, rng.randint(2, 3))
            return "".join(syllables) + rng.choice(("", "", "9", "X", " ZERO"))
        case "jazz":
            return f"{person} {rng.choice(('Trio', 'Quartet', 'Quintet', 'Big Band'))}"
        case "classical":
            return rng.choice(
                (
                    f"{rng.choice(_CITIES_OF_ORIGIN)} Symphony Orchestra",
                    f"{rng.choice(_CITIES_OF_ORIGIN)} Philharmonic",
                    f"{rng.choice(_LAST)} String Quartet",
                    f"{person}, {rng.choice(('piano', 'violin', 'cello'))}",
                )
            )
    raise ValueError(f"no name pattern for genre {genre!r}")


# How many performers of each music genre; big-venue genres first.
_MUSIC_GENRES = {
    "pop": 14,
    "rock": 14,
    "hip-hop": 10,
    "electronic": 10,
    "indie": 10,
    "country": 8,
    "r&b": 8,
    "latin": 8,
    "k-pop": 6,
    "metal": 6,
    "jazz": 8,
    "classical": 8,
}
# Genres that fill a stadium, an arena or an amphitheater; the rest play clubs and halls.
_BIG_ROOM_GENRES = (
    "pop",
    "rock",
    "hip-hop",
    "electronic",
    "country",
    "r&b",
    "latin",
    "k-pop",
    "metal",
)
_CLUB_GENRES = ("indie", "rock", "electronic", "hip-hop", "jazz", "metal", "r&b")
_HALL_GENRES = ("classical", "jazz")

_COMEDY_SPECIALS = (
    "Sorry, Not Sorry",
    "Overthinking It",
    "Small Talk",
    "Read the Room",
    "Unfiltered",
    "Adulting Is a Scam",
    "Tell Me More",
    "Out of Office",
)
_PRODUCTIONS = (
    ("The Clockmaker's Daughter", "musical"),
    ("Lanterns Over Lisbon", "musical"),
    ("Salt & Starlight", "musical"),
    ("A Winter in Verona", "drama"),
    ("The Glass Orchard", "drama"),
    ("The Last Ferry", "drama"),
    ("Ondine Reimagined", "ballet"),
    ("The Cartographer's Opera", "opera"),
)
_FAMILY_SHOWS = (
    ("Cirque Lumière", "circus"),
    ("Dino Trek Live", "family"),
    ("The Bubble Circus", "circus"),
    ("Robot Rumble Live", "family"),
    ("Ice Dreams on Tour", "ice show"),
    ("The Amazing Marvello", "magic"),
)
_CONFERENCES = (
    ("CloudScale Summit", "technology"),
    ("FinTech Forward", "finance"),
    ("PyCraft Conference", "technology"),
    ("Design Systems Live", "design"),
)
_TEAM_MASCOTS = (
    "Comets",
    "Skyhawks",
    "Ironclads",
    "Voyagers",
    "Thunderbirds",
    "Royals",
    "Sentinels",
    "Mariners",
    "Phantoms",
    "Stallions",
    "Monarchs",
    "Cyclones",
)
_AWAY_CITIES = {
    "football": ("Madrid", "Munich", "Milan", "Porto", "Guadalajara", "Monterrey", "Glasgow"),
    "baseball": ("Osaka", "Yokohama", "Nagoya", "Hiroshima", "Sapporo", "Fukuoka"),
    "australian football": ("Adelaide", "Perth", "Brisbane", "Sydney", "Geelong", "Hobart"),
    "basketball": ("Boston", "Miami", "Denver", "Phoenix", "Madrid", "Belgrade", "Manila"),
    "ice hockey": ("Montreal", "Boston", "Detroit", "Vancouver", "Calgary", "Pittsburgh"),
}

# The two performers the well-known events use; fixed, not drawn.
HOT_PERFORMER = (
    "Aurora Vale",
    "pop",
    "Aurora Vale is the pop voice of the decade: four number-one albums, sold-out "
    "world tours and a fan base that crashes websites on sale day.",
)
DEMO_PERFORMER = (
    "Ember & Ash",
    "indie",
    "Ember & Ash are a folk-pop duo from Glasgow whose harmonies fill concert "
    "halls on every continent.",
)


def _team_name(city: str, rng: random.Random) -> str:
    return f"{city} {rng.choice(_TEAM_MASCOTS)}"


def _describe(name: str, genre: str, rng: random.Random) -> str:
    origin = rng.choice(_CITIES_OF_ORIGIN)
    flavour = rng.choice(
        (
            "known for explosive live shows",
            "with a devoted following",
            "fresh off a new album",
            "praised by critics and fans alike",
            "on their biggest tour yet",
            "bringing a career-spanning set",
        )
    )
    return f"{name}: {genre} from {origin}, {flavour}."


@dataclass(frozen=True, slots=True)
class _Roster:
    """Performers grouped the way the event generator draws them."""

    all: tuple[Performer, ...]
    # Musicians and comedians by genre; the two pinned performers are not among them, so
    # no random event borrows the well-known names.
    by_genre: dict[str, tuple[Performer, ...]]
    productions: tuple[Performer, ...]
    family_shows: tuple[Performer, ...]
    conferences: tuple[Performer, ...]
    teams: dict[tuple[str, str], Performer]  # (sport, city) -> home team
    pinned: dict[str, Performer]  # name -> performer


def _performer(name: str, genre: str, description: str) -> Performer:
    return Performer(demo_id(f"performer/{name}"), name, description, genre)


def generate_performers() -> _Roster:
    """About 150 performers: musicians of twelve genres, comedians, productions, teams, ..."""
    rng = random.Random(f"{SEED}/performers")
    taken = {HOT_PERFORMER[0], DEMO_PERFORMER[0]}

    def unique(make: Callable[[], str]) -> str:
        while (name := make()) in taken:
            pass
        taken.add(name)
        return name

    by_genre: dict[str, list[Performer]] = {}
    for genre, count in _MUSIC_GENRES.items():
        for _ in range(count):
            name = unique(partial(_music_name, genre, rng))
            by_genre.setdefault(genre, []).append(
                _performer(name, genre, _describe(name, genre, rng))
            )
    for _ in range(14):
        name = unique(lambda: f"{rng.choice(_FIRST)} {rng.choice(_LAST)}")
        by_genre.setdefault("comedy", []).append(
            _performer(
                name,
                "comedy",
                (
                    f"{name} is a stand-up comedian {rng.choice(('from', 'raised in'))} "
                    f"{rng.choice(_CITIES_OF_ORIGIN)}, now touring a new hour."
                ),
            )
        )

    def fixed(entries: Sequence[tuple[str, str]], blurb: str) -> tuple[Performer, ...]:
        taken.update(name for name, _ in entries)
        return tuple(
            _performer(name, genre, blurb.format(name=name, genre=genre)) for name, genre in entries
        )

    productions = fixed(
        _PRODUCTIONS, "{name}: an acclaimed {genre} production on an international run."
    )
    family_shows = fixed(_FAMILY_SHOWS, "{name}: a {genre} show for the whole family.")
    conferences = fixed(
        _CONFERENCES, "{name}: the {genre} conference, with talks, workshops and an expo."
    )
    teams: dict[tuple[str, str], Performer] = {}
    for spec in VENUE_SPECS:
        if spec.sport is None or (spec.sport, spec.city) in teams:
            continue
        team_rng = random.Random(f"{SEED}/team/{spec.sport}/{spec.city}")
        name = unique(partial(_team_name, spec.city, team_rng))
        teams[(spec.sport, spec.city)] = _performer(
            name, spec.sport, f"{name}: {spec.city}'s {spec.sport} team."
        )

    pinned = {p.name: p for p in (_performer(*HOT_PERFORMER), _performer(*DEMO_PERFORMER))}
    everyone = (
        *pinned.values(),
        *(p for group in by_genre.values() for p in group),
        *productions,
        *family_shows,
        *conferences,
        *teams.values(),
    )
    return _Roster(
        all=everyone,
        by_genre={genre: tuple(group) for genre, group in by_genre.items()},
        productions=productions,
        family_shows=family_shows,
        conferences=conferences,
        teams=teams,
        pinned=pinned,
    )


# --------------------------------------------------------------------------------------------
# Events: a six-month calendar per venue
# --------------------------------------------------------------------------------------------

# Events per venue over the horizon, and the mix of types each kind of venue hosts.
# Sized so the full set passes a million tickets (about 1.2M) and loads in seconds: real venues
# host many more events, the demo platform sells a part of their calendars.
_EVENTS_PER_VENUE = {
    "stadium": 2,
    "arena": 3,
    "amphitheater": 5,
    "theater": 12,
    "hall": 12,
    "club": 14,
}
_TYPE_MIX = {
    "stadium": {"concert": 6, "sports": 3, "festival": 2},
    "arena": {"concert": 9, "sports": 4, "comedy": 2, "family": 2, "conference": 2},
    "amphitheater": {"concert": 7, "festival": 2, "comedy": 2},
    "theater": {"theater": 9, "concert": 3, "comedy": 3, "family": 2, "conference": 1},
    "hall": {"concert": 10, "theater": 3, "comedy": 1, "conference": 1},
    "club": {"concert": 8, "comedy": 2},
}
# Local start time, and length.
_SCHEDULE = {
    "concert": ((19, 30), timedelta(hours=3)),
    "sports": ((19, 0), timedelta(hours=3)),
    "theater": ((19, 30), timedelta(hours=2, minutes=45)),
    "comedy": ((20, 0), timedelta(hours=2)),
    "festival": ((12, 0), timedelta(days=2, hours=11)),
    "family": ((14, 0), timedelta(hours=2)),
    "conference": ((9, 0), timedelta(days=1, hours=8, minutes=30)),
}
# A typical ticket in US dollars, before tier and popularity.
_BASE_PRICE_USD = {
    "concert": 75,
    "sports": 70,
    "theater": 85,
    "comedy": 50,
    "festival": 160,
    "family": 40,
    "conference": 350,
}
_VENUE_PRICE_FACTOR = {
    "stadium": 1.25,
    "arena": 1.1,
    "amphitheater": 0.95,
    "theater": 1.0,
    "hall": 0.9,
    "club": 0.5,
}
_TIER_FACTOR = {"vip": 2.8, "premium": 1.7, "standard": 1.0, "value": 0.6}
# country -> (currency, units per US dollar, minor-unit exponent)
_CURRENCIES = {
    "US": ("USD", 1.0, 2),
    "GB": ("GBP", 0.79, 2),
    "FR": ("EUR", 0.92, 2),
    "NL": ("EUR", 0.92, 2),
    "DE": ("EUR", 0.92, 2),
    "IT": ("EUR", 0.92, 2),
    "JP": ("JPY", 150.0, 0),
    "AU": ("AUD", 1.5, 2),
    "CA": ("CAD", 1.36, 2),
    "MX": ("MXN", 18.0, 2),
    "SG": ("SGD", 1.34, 2),
    "AR": ("ARS", 950.0, 2),
}
_TOUR_WORDS = (
    "Horizons",
    "Afterglow",
    "Wildfire",
    "Gravity",
    "Daydream",
    "Heartland",
    "Neon Nights",
    "Echo Chamber",
    "Golden Hour",
    "Undertow",
    "Skylines",
    "Tidal",
)
_FESTIVALS = (
    "Solstice Sound Festival",
    "Northern Lights Weekender",
    "Tidewater Music Festival",
    "Summer Static",
    "Goldfield Festival",
    "Wavelength Festival",
)
_COMPOSERS = (
    "Mahler",
    "Beethoven",
    "Brahms",
    "Rachmaninoff",
    "Debussy",
    "Shostakovich",
    "Sibelius",
    "Dvořák",
)

# Day offsets (from the anchor day) on which a venue may have an event. Four days apart, so
# even a three-day festival never overlaps the next event (the schema forbids that).
_SLOTS = tuple(range(3, HORIZON_DAYS - 3, 4))

# The ids are demo_id("event/<venue key>/<slot>"), written out so docs can quote them (a unit
# test keeps the two spellings equal).
HOT_EVENT_ID = uuid.UUID("3038521a-4098-53b8-a8fa-76a0ca81e121")
DEMO_EVENT_ID = uuid.UUID("03a67087-67cc-5c61-b94c-c5f5e083f9f7")
HOT_EVENT_NAME = "Aurora Vale: The Northern Lights Tour"
DEMO_EVENT_NAME = "Ember & Ash: Live at the Royal Albert Hall"
_PINNED_SLOTS = {"wembley-stadium": 59, "royal-albert-hall": 11}

# The small set: this many events, each with about this many tickets (the hot event more).
_SMALL_EVENTS = 20
_SMALL_ALLOCATION = 210
_SMALL_HOT_ALLOCATION = 1000


def _local(day: date, at: tuple[int, int], zone: str) -> datetime:
    """A wall-clock time in the venue's zone, as an aware UTC datetime."""
    local = datetime(day.year, day.month, day.day, at[0], at[1], tzinfo=ZoneInfo(zone))
    return local.astimezone(UTC)


def _nice(amount: float) -> int:
    """Round a price to something a box office would print: two significant digits."""
    if amount < 100:
        return max(1, round(amount))
    step = int(10 ** (len(str(int(amount))) - 2))
    return round(amount / step) * step


def _prices(country: str, usd: float) -> tuple[str, dict[str, int]]:
    currency, per_usd, exponent = _CURRENCIES[country]
    return currency, {
        tier: _nice(usd * factor * per_usd) * 10**exponent for tier, factor in _TIER_FACTOR.items()
    }


def _make_event(
    *,
    venue: Venue,
    slot: int,
    today: date,
    performer: Performer,
    type_: str,
    name: str,
    description: str,
    popularity: float,
    on_sale_lead_days: int,
    **overrides: Any,
) -> Event:
    day = today + timedelta(days=slot)
    at, length = _SCHEDULE[type_]
    start = _local(day, at, venue.timezone)
    on_sale = _local(day - timedelta(days=on_sale_lead_days), (10, 0), venue.timezone)
    usd = _BASE_PRICE_USD[type_] * _VENUE_PRICE_FACTOR[venue.kind] * popularity
    currency, prices = _prices(venue.country, usd)
    fields: dict[str, Any] = {
        "id": demo_id(f"event/{venue.key}/{slot}"),
        "venue_id": venue.id,
        "performer_id": performer.id,
        "name": name,
        "description": description,
        "type": type_,
        "start_time": start,
        "end_time": start + length,
        "on_sale_time": min(on_sale, start),
        "currency": currency,
        "prices": prices,
        "max_tickets_per_user": {"family": 10, "conference": 4}.get(type_, 8),
    }
    fields.update(overrides)
    return Event(**fields)


def _pinned_events(venues: dict[str, Venue], roster: _Roster, today: date) -> list[Event]:
    hot_performer = roster.pinned[HOT_PERFORMER[0]]
    demo_performer = roster.pinned[DEMO_PERFORMER[0]]
    wembley = venues["wembley-stadium"]
    hot = _make_event(
        venue=wembley,
        slot=_PINNED_SLOTS["wembley-stadium"],
        today=today,
        performer=hot_performer,
        type_="concert",
        name=HOT_EVENT_NAME,
        description="One night only at Wembley. Demand will far exceed the stadium's "
        "capacity, so the sale runs through the virtual waiting queue.",
        popularity=1.8,
        on_sale_lead_days=0,
        # On sale tomorrow at 10:00 London time: "soon", and always in the future.
        on_sale_time=_local(today + timedelta(days=1), (10, 0), wembley.timezone),
        max_tickets_per_user=4,
        queue_enabled=True,
        queue_admission_rate_per_minute=600,
        queue_max_active=500,
        queue_admission_ttl_seconds=600,
    )
    hall = venues["royal-albert-hall"]
    demo = _make_event(
        venue=hall,
        slot=_PINNED_SLOTS["royal-albert-hall"],
        today=today,
        performer=demo_performer,
        type_="concert",
        name=DEMO_EVENT_NAME,
        description="An evening of songs old and new under the dome of the Royal Albert Hall.",
        popularity=1.0,
        on_sale_lead_days=0,
        on_sale_time=_local(today - timedelta(days=30), (10, 0), hall.timezone),
    )
    return [hot, demo]


def _pick_performer(
    type_: str, venue: Venue, roster: _Roster, rng: random.Random, spec: _VenueSpec
) -> Performer:
    match type_:
        case "concert":
            if venue.kind == "hall":
                genres: Sequence[str] = _HALL_GENRES
            elif venue.kind in ("club", "theater"):
                genres = _CLUB_GENRES
            else:
                genres = _BIG_ROOM_GENRES
            return rng.choice(roster.by_genre[rng.choice(genres)])
        case "festival":
            return rng.choice(roster.by_genre[rng.choice(_BIG_ROOM_GENRES)])
        case "sports":
            assert spec.sport is not None
            return roster.teams[(spec.sport, spec.city)]
        case "theater":
            return rng.choice(roster.productions)
        case "comedy":
            return rng.choice(roster.by_genre["comedy"])
        case "family":
            return rng.choice(roster.family_shows)
        case "conference":
            return rng.choice(roster.conferences)
    raise ValueError(type_)


def _title(type_: str, performer: Performer, venue: Venue, rng: random.Random) -> tuple[str, str]:
    """An event's name and description."""
    where = f"{venue.name}, {venue.city}"
    match type_:
        case "concert" if performer.genre == "classical":
            piece = f"{rng.choice(_COMPOSERS)} {rng.randint(1, 9)}"
            return (f"{performer.name}: {piece}", f"{performer.name} performs {piece} at {where}.")
        case "concert":
            tour = random.Random(f"{SEED}/tour/{performer.name}").choice(_TOUR_WORDS)
            return (
                f"{performer.name}: {tour} Tour",
                f"{performer.name} bring the {tour} Tour to {where}.",
            )
        case "festival":
            festival = rng.choice(_FESTIVALS)
            return (festival, f"Three days of music at {where}, headlined by {performer.name}.")
        case "sports":
            mascot = rng.choice([m for m in _TEAM_MASCOTS if not performer.name.endswith(m)])
            away = f"{rng.choice(_AWAY_CITIES[performer.genre])} {mascot}"
            return (
                f"{performer.name} vs {away}",
                f"{performer.genre.capitalize()}: {performer.name} host {away} at {where}.",
            )
        case "comedy":
            special = rng.choice(_COMEDY_SPECIALS)
            return (
                f"{performer.name}: {special}",
                f"{performer.name} brings the new stand-up hour '{special}' to {where}.",
            )
        case "conference":
            return (
                f"{performer.name} {venue.city}",
                f"Two days of talks and workshops at {where}.",
            )
        case _:  # theater, family
            return performer.name, f"{performer.description} At {where}."


def generate_events(venues: Sequence[Venue], roster: _Roster, today: date) -> list[Event]:
    """The full calendar: a few to a dozen events per venue over the next six months."""
    by_key = {venue.key: venue for venue in venues}
    specs = {spec.key: spec for spec in VENUE_SPECS}
    events = _pinned_events(by_key, roster, today)
    for venue in venues:
        spec = specs[venue.key]
        rng = random.Random(f"{SEED}/events/{venue.key}")
        pinned = _PINNED_SLOTS.get(venue.key)
        slots = sorted(
            rng.sample([s for s in _SLOTS if s != pinned], _EVENTS_PER_VENUE[venue.kind])
        )
        mix = dict(_TYPE_MIX[venue.kind])
        if spec.sport is None:
            mix.pop("sports", None)
        for slot in slots:
            type_ = rng.choices(list(mix), weights=list(mix.values()))[0]
            performer = _pick_performer(type_, venue, roster, rng, spec)
            name, description = _title(type_, performer, venue, rng)
            events.append(
                _make_event(
                    venue=venue,
                    slot=slot,
                    today=today,
                    performer=performer,
                    type_=type_,
                    name=name,
                    description=description,
                    popularity=rng.uniform(0.8, 1.5),
                    on_sale_lead_days=rng.choice((21, 30, 45, 60, 90, 120)),
                )
            )
    events.sort(key=lambda event: (event.start_time, event.id))
    return events


def _small_selection(events: Sequence[Event]) -> list[Event]:
    """20 events for the small set: the two well-known ones, then the earliest of each type in
    turn, each with a small allocation of seats."""
    chosen = {HOT_EVENT_ID: _SMALL_HOT_ALLOCATION, DEMO_EVENT_ID: _SMALL_ALLOCATION}
    queues = {t: [e for e in events if e.type == t and e.id not in chosen] for t in EVENT_TYPES}
    for type_ in itertools.cycle(EVENT_TYPES):
        if len(chosen) >= _SMALL_EVENTS or not any(queues.values()):
            break
        if queues[type_]:
            chosen[queues[type_].pop(0).id] = _SMALL_ALLOCATION
    return [
        dataclasses.replace(event, ticket_allocation=chosen[event.id])
        for event in events
        if event.id in chosen
    ]


def generate(*, small: bool = False, today: date | None = None) -> DemoData:
    """The demo data set, anchored to ``today`` (default: the current UTC day)."""
    today = today if today is not None else datetime.now(UTC).date()
    venues = generate_venues()
    roster = generate_performers()
    events = generate_events(venues, roster, today)
    if small:
        events = _small_selection(events)
    return DemoData(today, small, venues, roster.all, tuple(events))


# --------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSummary:
    """What the database holds after ``seed`` (counts of the whole tables, not only demo rows)."""

    venues: int
    performers: int
    events: int
    tickets: int
    # The queue-enabled hot sale, None if it is not in the database.
    hot_event_id: uuid.UUID | None
    # Tickets this call wrote: 0 when the demo data was already there.
    loaded_tickets: int = 0


# Serializes concurrent seeders (a stack start and a test, say): pg_advisory_lock key.
_ADVISORY_LOCK_KEY = 0x7469636B6574  # "ticket"
# Commit after at least this many tickets: bounded transactions, and a Ctrl-C keeps the work
# done so far (the next run loads only the missing events).
_BATCH_TICKETS = 100_000
# Reset empties these; CASCADE also empties tables that later migrations hang off them.
_RESET_TABLES = (
    "idempotency_keys",
    "payments",
    "booking_tickets",
    "bookings",
    "tickets",
    "events",
    "performers",
    "venues",
)


def seed(
    database_url: str, *, small: bool = False, reset: bool = False, progress: bool = True
) -> SeedSummary:
    """Load the demo data into a migrated database; return what the database then holds.

    Idempotent: the demo rows have fixed ids, and an event is written in the same transaction
    as its tickets. If every demo event is already there (a second run, or a small set over a
    full one) nothing is written. If only some are (an interrupted run), the missing ones are
    loaded; rows already there are left as they are (so a full set over a small one keeps the
    small allocation of the 20 shared events). ``reset=True`` first truncates the catalog and
    booking tables, so the result is exactly the chosen set.

    Concurrent calls are serialized by an advisory lock: the second finds the data there.
    """
    started = time.monotonic()
    data = generate(small=small)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Session-level lock, released when the connection closes.
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        if reset:
            tables = sql.SQL(", ").join(map(sql.Identifier, _RESET_TABLES))
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(tables))
        missing = _missing_events(conn, data)
        loaded = _load(conn, data, missing, progress=progress) if missing else 0
        summary = _summary(conn, loaded)
    log.info(
        "demo data %s",
        "loaded" if loaded else "already present",
        extra={
            "small": small,
            "events_loaded": len(missing),
            "tickets_loaded": loaded,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    return summary


def _missing_events(conn: psycopg.Connection[Any], data: DemoData) -> list[Event]:
    wanted = [event.id for event in data.events]
    present = {
        row[0] for row in conn.execute("SELECT id FROM events WHERE id = ANY(%s)", (wanted,))
    }
    return [event for event in data.events if event.id not in present]


def _batches(data: DemoData, events: Sequence[Event]) -> Iterator[list[Event]]:
    batch: list[Event] = []
    size = 0
    for event in events:
        batch.append(event)
        size += data.ticket_count(event)
        if size >= _BATCH_TICKETS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _load(
    conn: psycopg.Connection[Any], data: DemoData, events: Sequence[Event], *, progress: bool
) -> int:
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO venues (id, name, address, city, region, country, latitude,"
                " longitude, timezone, seat_map, capacity)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                [
                    (
                        v.id,
                        v.name,
                        v.address,
                        v.city,
                        v.region,
                        v.country,
                        v.latitude,
                        v.longitude,
                        v.timezone,
                        Jsonb(v.seat_map()),
                        v.capacity,
                    )
                    for v in data.venues
                ],
            )
            cur.executemany(
                "INSERT INTO performers (id, name, description, genre) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                [(p.id, p.name, p.description, p.genre) for p in data.performers],
            )

    total = sum(data.ticket_count(event) for event in events)
    loaded = 0
    with _progress_bar(progress, total) as advance:
        for batch in _batches(data, events):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO events (id, venue_id, performer_id, name, description, type,"
                    " start_time, end_time, on_sale_time, queue_enabled,"
                    " queue_admission_rate_per_minute, queue_max_active,"
                    " queue_admission_ttl_seconds, max_tickets_per_user, currency)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            e.id,
                            e.venue_id,
                            e.performer_id,
                            e.name,
                            e.description,
                            e.type,
                            e.start_time,
                            e.end_time,
                            e.on_sale_time,
                            e.queue_enabled,
                            e.queue_admission_rate_per_minute,
                            e.queue_max_active,
                            e.queue_admission_ttl_seconds,
                            e.max_tickets_per_user,
                            e.currency,
                        )
                        for e in batch
                    ],
                )
                columns = ", ".join(TICKET_COLUMNS)
                with cur.copy(f"COPY tickets ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    # currency is char(3): psycopg has no binary dumper for bpchar,
                    # and text's binary form (the bytes) is what char's input reads.
                    copy.set_types(["uuid", "uuid", "text", "text", "text", "int8", "text"])
                    for event in batch:
                        pending = 0
                        for ticket in data.tickets(event):
                            copy.write_row(ticket)
                            pending += 1
                            if pending == 10_000:
                                advance(pending)
                                loaded += pending
                                pending = 0
                        advance(pending)
                        loaded += pending
    with conn.cursor() as cur:
        # Fresh statistics, so the first queries after a seed get sensible plans.
        cur.execute("ANALYZE venues, performers, events, tickets")
    return loaded


@contextmanager
def _progress_bar(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a rich progress bar on stderr, or a no-op when ``show`` is False."""
    if not show:
        yield lambda n: None
        return
    with Progress(
        TextColumn("[bold]seeding tickets"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("tickets", total=total)
        yield lambda n: bar.advance(task, n)


def _summary(conn: psycopg.Connection[Any], loaded: int) -> SeedSummary:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM venues), (SELECT count(*) FROM performers),"
        " (SELECT count(*) FROM events), (SELECT count(*) FROM tickets),"
        " (SELECT id FROM events WHERE id = %s)",
        (HOT_EVENT_ID,),
    ).fetchone()
    assert row is not None
    venues, performers, events, tickets, hot_event_id = row
    return SeedSummary(venues, performers, events, tickets, hot_event_id, loaded)
