"""The schema (deploy/migrations) and the demo seed against the stack's real Postgres.

Everything here runs in a database of its own, created on the stack's server for this module
and dropped at the end, so the stack's `ticketing` database is never touched.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors, sql

from deploy.demo_data import DEMO_EVENT_ID, HOT_EVENT_ID, SeedSummary, demo_id, generate, seed
from deploy.migrate import MIGRATIONS_DIR, apply_migrations

pytestmark = pytest.mark.integration


# The migration ids, in the order they must apply.
MIGRATION_IDS = sorted(
    p.name.removesuffix(".sql")
    for p in MIGRATIONS_DIR.glob("*.sql")
    if not p.name.endswith(".rollback.sql")
)


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of server_url (its URL), dropped afterwards."""
    name = f"test_schema_seed_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def database_url(stack: Any) -> Iterator[str]:
    with scratch_database(stack.database_url) as url:
        yield url


@pytest.fixture(scope="module")
def first_apply(database_url: str) -> list[str]:
    """The migration ids applied to the empty database."""
    return apply_migrations(database_url)


@pytest.fixture(scope="module")
def seeded(database_url: str, first_apply: list[str]) -> SeedSummary:
    return seed(database_url, small=True, reset=True, progress=False)


@pytest.fixture
def conn(database_url: str, seeded: SeedSummary) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def snapshot(database_url: str) -> dict[str, Any]:
    """Every demo id in the database, tickets condensed to a digest."""
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT array_agg(id ORDER BY id) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            for table in ("venues", "performers", "events")
        } | {
            "tickets": conn.execute(
                "SELECT count(*), md5(string_agg(id::text || event_id::text || section"
                " || row_label || seat_label || price_minor, ',' ORDER BY id)) FROM tickets"
            ).fetchone()
        }


def counts(summary: SeedSummary) -> tuple[int, int, int, int]:
    return summary.venues, summary.performers, summary.events, summary.tickets


def test_migrations_apply_to_an_empty_database_then_nothing(
    database_url: str, first_apply: list[str]
) -> None:
    assert first_apply == MIGRATION_IDS
    assert apply_migrations(database_url) == []


def test_concurrent_migrators_apply_each_migration_once(stack: Any) -> None:
    # The stack and a test run, or two replicas, may start at the same moment.
    with scratch_database(stack.database_url) as url:
        results: list[list[str]] = []
        threads = [
            threading.Thread(target=lambda: results.append(apply_migrations(url))) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(results) == [[], [], MIGRATION_IDS]


def test_small_seed_gives_the_promised_counts(seeded: SeedSummary) -> None:
    expected = generate(small=True)
    assert counts(seeded) == (
        25,
        len(expected.performers),
        20,
        expected.total_tickets(),
    )
    assert 4_000 <= seeded.tickets <= 6_000
    assert seeded.hot_event_id == HOT_EVENT_ID
    assert seeded.loaded_tickets == seeded.tickets


def test_seed_is_deterministic(database_url: str, seeded: SeedSummary) -> None:
    before = snapshot(database_url)
    again = seed(database_url, small=True, reset=True, progress=False)
    assert counts(again) == counts(seeded)
    assert snapshot(database_url) == before


def test_seed_without_reset_leaves_existing_data_alone(
    database_url: str, conn: psycopg.Connection[Any], seeded: SeedSummary
) -> None:
    conn.execute(
        "UPDATE venues SET name = 'Renamed by an operator' WHERE id = %s",
        (demo_id("venue/wembley-stadium"),),
    )
    again = seed(database_url, small=True, progress=False)
    assert counts(again) == counts(seeded)
    assert again.loaded_tickets == 0
    assert conn.execute(
        "SELECT count(*) FROM venues WHERE name = 'Renamed by an operator'"
    ).fetchone() == (1,)
    seed(database_url, small=True, reset=True, progress=False)


def test_seed_completes_an_interrupted_load(
    database_url: str, conn: psycopg.Connection[Any], seeded: SeedSummary
) -> None:
    # An interrupted seed leaves whole events behind (each commits with its tickets): take
    # one away and run again.
    row = conn.execute("SELECT count(*) FROM tickets WHERE event_id = %s", (DEMO_EVENT_ID,))
    (demo_tickets,) = row.fetchone() or (0,)
    conn.execute("DELETE FROM events WHERE id = %s", (DEMO_EVENT_ID,))
    again = seed(database_url, small=True, progress=False)
    assert again.loaded_tickets == demo_tickets > 0
    assert counts(again) == counts(seeded)


def test_concurrent_seeds_load_once(database_url: str, seeded: SeedSummary) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE venues, performers, events, tickets CASCADE")
    results: list[SeedSummary] = []

    def run() -> None:
        results.append(seed(database_url, small=True, progress=False))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    assert sorted(r.loaded_tickets for r in results) == [0, seeded.tickets]
    assert counts(results[0]) == counts(results[1]) == counts(seeded)


def test_hot_event_has_its_queue_settings(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT e.name, e.queue_enabled, e.queue_admission_rate_per_minute, e.queue_max_active,"
        " e.queue_admission_ttl_seconds, e.on_sale_time > now(), v.capacity"
        " FROM events e JOIN venues v ON v.id = e.venue_id WHERE e.id = %s",
        (HOT_EVENT_ID,),
    ).fetchone()
    assert row is not None
    assert row[:6] == ("Aurora Vale: The Northern Lights Tour", True, 600, 500, 600, True)
    assert row[6] >= 50_000  # a stadium
    demo = conn.execute(
        "SELECT queue_enabled, on_sale_time <= now() FROM events WHERE id = %s",
        (DEMO_EVENT_ID,),
    ).fetchone()
    assert demo == (False, True)


def test_a_lapsed_hold_reads_as_available(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction(force_rollback=True):
        lapsed, live = (
            row[0]
            for row in conn.execute(
                "SELECT id FROM tickets WHERE event_id = %s ORDER BY id LIMIT 2",
                (DEMO_EVENT_ID,),
            )
        )
        conn.execute(
            "UPDATE tickets SET status = 'held', holder_user_id = 'alice',"
            " hold_expire_time = now() - interval '1 second' WHERE id = %s",
            (lapsed,),
        )
        conn.execute(
            "UPDATE tickets SET status = 'held', holder_user_id = 'bob',"
            " hold_expire_time = now() + interval '10 minutes' WHERE id = %s",
            (live,),
        )
        view = dict(
            (row[0], row[1:])
            for row in conn.execute(
                "SELECT id, stored_status, effective_status, is_available, holder_user_id"
                " FROM ticket_availability WHERE id = ANY(%s)",
                ([lapsed, live],),
            )
        )
        assert view[lapsed] == ("held", "available", True, None)
        assert view[live] == ("held", "held", False, "bob")

        # The same definition decides a writer's conditional update: carol gets the seat
        # whose hold lapsed, not the one bob still holds.
        claimed = conn.execute(
            "UPDATE tickets SET holder_user_id = 'carol',"
            " hold_expire_time = now() + interval '10 minutes'"
            " WHERE id = ANY(%s) AND ticket_is_available(status, hold_expire_time)"
            " RETURNING id, version",
            ([lapsed, live],),
        ).fetchall()
        assert claimed == [(lapsed, 2)]  # two updates, two trigger-bumped versions


def test_constraints_reject_a_hold_without_holder_and_a_duplicate_seat(
    conn: psycopg.Connection[Any],
) -> None:
    ticket = conn.execute(
        "SELECT id, event_id, section, row_label, seat_label FROM tickets"
        " WHERE event_id = %s LIMIT 1",
        (DEMO_EVENT_ID,),
    ).fetchone()
    assert ticket is not None
    with pytest.raises(errors.CheckViolation, match="tickets_status_fields"):
        conn.execute(
            "UPDATE tickets SET status = 'held', hold_expire_time = now() + interval '5 minutes'"
            " WHERE id = %s",
            (ticket[0],),
        )
    with pytest.raises(errors.UniqueViolation, match="tickets_seat_key"):
        conn.execute(
            "INSERT INTO tickets (event_id, section, row_label, seat_label, price_minor, currency)"
            " VALUES (%s, %s, %s, %s, 1000, 'GBP')",
            ticket[1:],
        )
    with pytest.raises(errors.CheckViolation, match="tickets_status_fields"):
        conn.execute("UPDATE tickets SET status = 'booked' WHERE id = %s", (ticket[0],))


def test_catalog_constraints(conn: psycopg.Connection[Any]) -> None:
    event = conn.execute(
        "SELECT venue_id, performer_id, start_time, end_time FROM events WHERE id = %s",
        (DEMO_EVENT_ID,),
    ).fetchone()
    assert event is not None
    # Two events cannot overlap in one venue: they would sell the same seats.
    with pytest.raises(errors.ExclusionViolation, match="events_venue_no_overlap"):
        conn.execute(
            "INSERT INTO events (venue_id, performer_id, name, type, start_time, end_time,"
            " on_sale_time, currency) VALUES (%s, %s, 'Double booked', 'comedy',"
            " %s + interval '1 hour', %s + interval '2 hours', now(), 'GBP')",
            event,
        )
    with pytest.raises(errors.CheckViolation, match="venues_capacity_matches_seat_map"):
        conn.execute("UPDATE venues SET capacity = capacity + 1 WHERE id = %s", (event[0],))
    with pytest.raises(errors.CheckViolation, match="venues_timezone_check"):
        conn.execute("UPDATE venues SET timezone = 'EST' WHERE id = %s", (event[0],))


def test_publication_covers_the_catalog_tables(conn: psycopg.Connection[Any]) -> None:
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'ticketing_search'"
        )
    }
    assert tables == {"venues", "performers", "events", "tickets"}
