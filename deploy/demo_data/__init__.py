"""Demo data: a deterministic, realistic catalog with its tickets, and the loader for it.

The modules: ``records`` (the record types and ids), ``tables`` (the data the generator draws
from), ``generator`` and ``loader``. Two halves that share nothing but the record types:

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

from deploy.demo_data.generator import (
    generate,
    generate_events,
    generate_performers,
    generate_venues,
)
from deploy.demo_data.loader import SeedSummary, seed
from deploy.demo_data.records import (
    NAMESPACE,
    SEED,
    TICKET_COLUMNS,
    DemoData,
    Event,
    Performer,
    SeatRow,
    Section,
    Ticket,
    Venue,
    demo_id,
)
from deploy.demo_data.tables import (
    DEMO_EVENT_ID,
    DEMO_EVENT_NAME,
    DEMO_PERFORMER,
    HORIZON_DAYS,
    HOT_EVENT_ID,
    HOT_EVENT_NAME,
    HOT_PERFORMER,
    PRICE_TIERS,
    VENUE_SPECS,
)
from ticketing_common.event_types import EVENT_TYPES

__all__ = [
    "DEMO_EVENT_ID",
    "DEMO_EVENT_NAME",
    "DEMO_PERFORMER",
    "EVENT_TYPES",
    "HORIZON_DAYS",
    "HOT_EVENT_ID",
    "HOT_EVENT_NAME",
    "HOT_PERFORMER",
    "NAMESPACE",
    "PRICE_TIERS",
    "SEED",
    "TICKET_COLUMNS",
    "VENUE_SPECS",
    "DemoData",
    "Event",
    "Performer",
    "SeatRow",
    "Section",
    "SeedSummary",
    "Ticket",
    "Venue",
    "demo_id",
    "generate",
    "generate_events",
    "generate_performers",
    "generate_venues",
    "seed",
]
