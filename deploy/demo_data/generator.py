# ruff: noqa: S311 - random.Random here makes plausible demo data from fixed seeds, on purpose.
"""The generator: venues, performers and events from ``tables``, as ``records``; no I/O, and no
clock unless ``today`` is left out. Every random choice comes from a ``random.Random`` seeded
with a fixed string, one per concern."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from deploy.demo_data.records import (
    SEED,
    DemoData,
    Event,
    Performer,
    SeatRow,
    Section,
    Venue,
    demo_id,
)
from deploy.demo_data.tables import (
    ADJECTIVES,
    AWAY_CITIES,
    BASE_PRICE_USD,
    BIG_ROOM_GENRES,
    CITIES_OF_ORIGIN,
    CLUB_GENRES,
    COMEDY_SPECIALS,
    COMPOSERS,
    CONFERENCES,
    CURRENCIES,
    DEMO_EVENT_ID,
    DEMO_EVENT_NAME,
    DEMO_PERFORMER,
    EVENTS_PER_VENUE,
    FAMILY_SHOWS,
    FESTIVALS,
    FIRST,
    HALL_GENRES,
    HIP_HOP_WORDS,
    HORIZON_DAYS,
    HOT_EVENT_ID,
    HOT_EVENT_NAME,
    HOT_PERFORMER,
    KPOP_SYLLABLES,
    LAST,
    MUSIC_GENRES,
    NOUNS,
    PINNED_SLOTS,
    PRODUCTIONS,
    SCHEDULE,
    SMALL_ALLOCATION,
    SMALL_EVENTS,
    SMALL_HOT_ALLOCATION,
    STAGE_NAMES,
    TEAM_MASCOTS,
    TIER_FACTOR,
    TOUR_WORDS,
    TYPE_MIX,
    VENUE_PRICE_FACTOR,
    VENUE_SPECS,
    VenueSpec,
)
from ticketing_common.event_types import EVENT_TYPES

# --------------------------------------------------------------------------------------------
# Venues: real places, generated seat maps
# --------------------------------------------------------------------------------------------


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
        # The pitch is standing room for concerts: as many places as 40 seats a row took.
        sections.append(Section(f"Floor {letter}", tier, (), standing_capacity=40 * floor_rows))
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
    # Standing room: a GA ticket is a place on the floor, not a seat.
    return [
        Section("General Admission", "standard", (), standing_capacity=round(800 * scale)),
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


def _music_name(genre: str, rng: random.Random) -> str:
    person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    band = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    match genre:
        case "pop" | "r&b":
            return rng.choice((person, rng.choice(STAGE_NAMES), person))
        case "rock" | "indie" | "metal":
            return rng.choice((f"The {band}", band))
        case "hip-hop":
            prefix = rng.choice(("Lil", "Young", "MC", "Big", rng.choice(FIRST)))
            return f"{prefix} {rng.choice(HIP_HOP_WORDS)}"
        case "electronic":
            return rng.choice(
                (
                    f"DJ {rng.choice(HIP_HOP_WORDS)}",
                    f"{rng.choice(ADJECTIVES)}{rng.choice(NOUNS).lower()}",
                    f"{rng.choice(STAGE_NAMES)} & {rng.choice(STAGE_NAMES)}",
                )
            )
        case "country":
            return rng.choice((person, f"The {rng.choice(LAST)} Brothers", person))
        case "latin":
            return rng.choice((person, f"Los {rng.choice(NOUNS)}"))
        case "k-pop":
            syllables = rng.sample(KPOP_SYLLABLES, rng.randint(2, 3))
            return "".join(syllables) + rng.choice(("", "", "9", "X", " ZERO"))
        case "jazz":
            return f"{person} {rng.choice(('Trio', 'Quartet', 'Quintet', 'Big Band'))}"
        case "classical":
            return rng.choice(
                (
                    f"{rng.choice(CITIES_OF_ORIGIN)} Symphony Orchestra",
                    f"{rng.choice(CITIES_OF_ORIGIN)} Philharmonic",
                    f"{rng.choice(LAST)} String Quartet",
                    f"{person}, {rng.choice(('piano', 'violin', 'cello'))}",
                )
            )
    raise ValueError(f"no name pattern for genre {genre!r}")


def _team_name(city: str, rng: random.Random) -> str:
    return f"{city} {rng.choice(TEAM_MASCOTS)}"


def _describe(name: str, genre: str, rng: random.Random) -> str:
    origin = rng.choice(CITIES_OF_ORIGIN)
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
    for genre, count in MUSIC_GENRES.items():
        for _ in range(count):
            name = unique(partial(_music_name, genre, rng))
            by_genre.setdefault(genre, []).append(
                _performer(name, genre, _describe(name, genre, rng))
            )
    for _ in range(14):
        name = unique(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}")
        by_genre.setdefault("comedy", []).append(
            _performer(
                name,
                "comedy",
                (
                    f"{name} is a stand-up comedian {rng.choice(('from', 'raised in'))} "
                    f"{rng.choice(CITIES_OF_ORIGIN)}, now touring a new hour."
                ),
            )
        )

    def fixed(entries: Sequence[tuple[str, str]], blurb: str) -> tuple[Performer, ...]:
        taken.update(name for name, _ in entries)
        return tuple(
            _performer(name, genre, blurb.format(name=name, genre=genre)) for name, genre in entries
        )

    productions = fixed(
        PRODUCTIONS, "{name}: an acclaimed {genre} production on an international run."
    )
    family_shows = fixed(FAMILY_SHOWS, "{name}: a {genre} show for the whole family.")
    conferences = fixed(
        CONFERENCES, "{name}: the {genre} conference, with talks, workshops and an expo."
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

# Day offsets (from the anchor day) on which a venue may have an event. Four days apart, so
# even a three-day festival never overlaps the next event (the schema forbids that).
_SLOTS = tuple(range(3, HORIZON_DAYS - 3, 4))


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
    currency, per_usd, exponent = CURRENCIES[country]
    return currency, {
        tier: _nice(usd * factor * per_usd) * 10**exponent for tier, factor in TIER_FACTOR.items()
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
    at, length = SCHEDULE[type_]
    start = _local(day, at, venue.timezone)
    on_sale = _local(day - timedelta(days=on_sale_lead_days), (10, 0), venue.timezone)
    usd = BASE_PRICE_USD[type_] * VENUE_PRICE_FACTOR[venue.kind] * popularity
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
        slot=PINNED_SLOTS["wembley-stadium"],
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
        slot=PINNED_SLOTS["royal-albert-hall"],
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
    type_: str, venue: Venue, roster: _Roster, rng: random.Random, spec: VenueSpec
) -> Performer:
    match type_:
        case "concert":
            if venue.kind == "hall":
                genres: Sequence[str] = HALL_GENRES
            elif venue.kind in ("club", "theater"):
                genres = CLUB_GENRES
            else:
                genres = BIG_ROOM_GENRES
            return rng.choice(roster.by_genre[rng.choice(genres)])
        case "festival":
            return rng.choice(roster.by_genre[rng.choice(BIG_ROOM_GENRES)])
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
            piece = f"{rng.choice(COMPOSERS)} {rng.randint(1, 9)}"
            return (f"{performer.name}: {piece}", f"{performer.name} performs {piece} at {where}.")
        case "concert":
            tour = random.Random(f"{SEED}/tour/{performer.name}").choice(TOUR_WORDS)
            return (
                f"{performer.name}: {tour} Tour",
                f"{performer.name} bring the {tour} Tour to {where}.",
            )
        case "festival":
            festival = rng.choice(FESTIVALS)
            return (festival, f"Three days of music at {where}, headlined by {performer.name}.")
        case "sports":
            mascot = rng.choice([m for m in TEAM_MASCOTS if not performer.name.endswith(m)])
            away = f"{rng.choice(AWAY_CITIES[performer.genre])} {mascot}"
            return (
                f"{performer.name} vs {away}",
                f"{performer.genre.capitalize()}: {performer.name} host {away} at {where}.",
            )
        case "comedy":
            special = rng.choice(COMEDY_SPECIALS)
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
        pinned = PINNED_SLOTS.get(venue.key)
        slots = sorted(rng.sample([s for s in _SLOTS if s != pinned], EVENTS_PER_VENUE[venue.kind]))
        mix = dict(TYPE_MIX[venue.kind])
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
    chosen = {HOT_EVENT_ID: SMALL_HOT_ALLOCATION, DEMO_EVENT_ID: SMALL_ALLOCATION}
    queues = {t: [e for e in events if e.type == t and e.id not in chosen] for t in EVENT_TYPES}
    for type_ in itertools.cycle(EVENT_TYPES):
        if len(chosen) >= SMALL_EVENTS or not any(queues.values()):
            break
        if queues[type_]:
            chosen[queues[type_].pop(0).id] = SMALL_ALLOCATION
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
