"""Each service connects to Postgres as its own role and may do what its service does, nothing
more (deploy/migrations/0008_service_roles.sql; the table in CONTRIBUTING.md, "Who owns which
table"): the catalog writes the catalog and creates tickets but cannot sell one; booking holds
and sells tickets and writes bookings and payments but cannot rename an event or reprice a
seat; the CDC worker reads the published tables and nothing else; the queue and search have no
role at all. Every statement runs in a transaction that is rolled back, so nothing is changed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors

from deploy.demo_data import DEMO_EVENT_ID
from deploy.stack.components import DATABASE_ROLES

pytestmark = pytest.mark.integration

CATALOG, BOOKING, CDC = "ticketing_catalog", "ticketing_booking", "ticketing_cdc"


def url_as(stack: Any, role: str) -> str:
    parts = urlsplit(stack.database_url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


@pytest.fixture(scope="module")
def ids(db: psycopg.Connection[Any]) -> dict[str, str]:
    """A demo event, its venue and performer, an available ticket of it, and a booking."""
    event = db.execute(
        "SELECT id::text, venue_id::text, performer_id::text FROM events WHERE id = %s",
        (DEMO_EVENT_ID,),
    ).fetchone()
    assert event is not None, "the demo event is missing"
    ticket = db.execute(
        "SELECT id::text FROM tickets WHERE event_id = %s AND status = 'available' LIMIT 1",
        (DEMO_EVENT_ID,),
    ).fetchone()
    assert ticket is not None
    return {"event": event[0], "venue": event[1], "performer": event[2], "ticket": ticket[0]}


# (role, what it does, SQL) for what each service does, and for what it must be refused.
ALLOWED = [
    (CATALOG, "reads and edits an event", "UPDATE events SET name = name WHERE id = %(event)s"),
    (CATALOG, "edits a venue", "UPDATE venues SET name = name WHERE id = %(venue)s"),
    (CATALOG, "edits a performer", "UPDATE performers SET genre = genre WHERE id = %(performer)s"),
    (
        CATALOG,
        "creates an event's tickets",
        "INSERT INTO tickets (event_id, section, row_label, seat_label, price_minor, currency)"
        " VALUES (%(event)s, 'Test', 'Z', '999', 100, 'GBP')",
    ),
    (
        CATALOG,
        "counts an event's tickets",
        "SELECT count(*) FROM tickets WHERE event_id = %(event)s",
    ),
    (
        BOOKING,
        "holds a ticket through hold_tickets",
        "SELECT outcome FROM hold_tickets('owner-test', ARRAY[%(ticket)s]::uuid[],"
        " interval '1 minute', NULL)",
    ),
    (
        BOOKING,
        "sells a ticket to a new booking",
        "WITH b AS (INSERT INTO bookings (user_id, event_id, total_minor, currency)"
        " VALUES ('owner-test', %(event)s, 100, 'GBP') RETURNING id)"
        " UPDATE tickets SET status = 'booked', booking_id = (SELECT id FROM b),"
        " holder_user_id = 'owner-test', hold_expire_time = NULL WHERE id = %(ticket)s",
    ),
    (
        BOOKING,
        "locks tickets to check its holds",
        "SELECT id FROM tickets WHERE id = %(ticket)s FOR UPDATE",
    ),
    (
        BOOKING,
        "writes a booking",
        "INSERT INTO bookings (user_id, event_id, total_minor, currency)"
        " VALUES ('owner-test', %(event)s, 100, 'GBP')",
    ),
    (
        BOOKING,
        "begins a confirm through confirm_begin",
        "SELECT outcome FROM confirm_begin('owner-test', ARRAY[%(ticket)s]::uuid[], NULL,"
        " 'pm_card_visa')",
    ),
    (
        BOOKING,
        "sells a booking through confirm_sell",
        "SELECT sold FROM confirm_sell(gen_random_uuid())",
    ),
    (BOOKING, "reads its payments", "SELECT count(*) FROM payments"),
    (BOOKING, "reads the sale's rules", "SELECT max_tickets_per_user FROM events LIMIT 1"),
    (CDC, "reads the published tables", "SELECT count(*) FROM venues, performers, events LIMIT 1"),
    (CDC, "re-reads tickets", "SELECT count(*) FROM tickets WHERE event_id = %(event)s"),
]

REFUSED = [
    (CATALOG, "sells a ticket", "UPDATE tickets SET status = 'booked' WHERE id = %(ticket)s"),
    (
        CATALOG,
        "holds a ticket",
        "SELECT outcome FROM hold_tickets('owner-test', ARRAY[%(ticket)s]::uuid[],"
        " interval '1 minute', NULL)",
    ),
    (
        CATALOG,
        "writes a booking",
        "INSERT INTO bookings (user_id, event_id, total_minor, currency)"
        " VALUES ('owner-test', %(event)s, 100, 'GBP')",
    ),
    (
        CATALOG,
        "sells a booking",
        "SELECT sold FROM confirm_sell(gen_random_uuid())",
    ),
    (CATALOG, "reads payments", "SELECT count(*) FROM payments"),
    (CATALOG, "deletes a ticket", "DELETE FROM tickets WHERE id = %(ticket)s"),
    (BOOKING, "renames an event", "UPDATE events SET name = 'Renamed' WHERE id = %(event)s"),
    (BOOKING, "reprices a seat", "UPDATE tickets SET price_minor = 0 WHERE id = %(ticket)s"),
    (
        BOOKING,
        "adds a ticket",
        "INSERT INTO tickets (event_id, section, row_label, seat_label, price_minor, currency)"
        " VALUES (%(event)s, 'Test', 'Z', '999', 100, 'GBP')",
    ),
    (BOOKING, "deletes a ticket", "DELETE FROM tickets WHERE id = %(ticket)s"),
    (BOOKING, "edits a venue", "UPDATE venues SET name = 'x' WHERE id = %(venue)s"),
    (BOOKING, "changes the schema", "ALTER TABLE tickets ADD COLUMN note text"),
    (CDC, "edits an event", "UPDATE events SET name = 'x' WHERE id = %(event)s"),
    (CDC, "reads bookings (personal data, not published)", "SELECT count(*) FROM bookings"),
    (CDC, "reads payments", "SELECT count(*) FROM payments"),
    (CDC, "reads idempotency keys", "SELECT count(*) FROM idempotency_keys"),
]


def run_as(stack: Any, role: str, statement: str, ids: dict[str, str]) -> None:
    with psycopg.connect(url_as(stack, role), connect_timeout=10) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(statement, ids)


@pytest.mark.parametrize(("role", "what", "statement"), ALLOWED, ids=[a[1] for a in ALLOWED])
def test_each_role_can_do_what_its_service_does(stack, ids, role, what, statement):
    run_as(stack, role, statement, ids)


@pytest.mark.parametrize(("role", "what", "statement"), REFUSED, ids=[r[1] for r in REFUSED])
def test_each_role_is_refused_what_another_service_owns(stack, ids, role, what, statement):
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        run_as(stack, role, statement, ids)
    print(f"{role} {what}: {refused.value.sqlstate} {str(refused.value).splitlines()[0]}")


def test_only_the_cdc_role_may_replicate_and_no_role_is_a_superuser(db):
    rows = db.execute(
        "SELECT rolname, rolreplication, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin"
        " FROM pg_roles WHERE rolname LIKE 'ticketing\\_%' ORDER BY rolname"
    ).fetchall()
    print("roles:", rows)
    assert {r[0]: r[1:] for r in rows} == {
        BOOKING: (False, False, False, False, True),
        CATALOG: (False, False, False, False, True),
        CDC: (True, False, False, False, True),
    }


def test_the_queue_and_search_have_no_role_at_all(stack):
    assert sorted(DATABASE_ROLES) == ["booking", "catalog", "cdc-worker"]
    for missing in ("ticketing_queue", "ticketing_search"):
        with pytest.raises(psycopg.OperationalError, match="does not exist"):
            psycopg.connect(url_as(stack, missing), connect_timeout=10).close()


def test_the_stacks_services_are_connected_as_their_roles(db):
    """What the running stack does: every session a service opened carries its role, and no
    queue or search process holds a session at all."""
    sessions = dict(
        db.execute(
            "SELECT application_name, array_agg(DISTINCT usename::text ORDER BY usename::text)"
            " FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND application_name <> '' GROUP BY application_name"
        ).fetchall()
    )
    print("sessions by application:", sessions)
    assert sessions.get("catalog") == [CATALOG]
    assert sessions.get("booking") == [BOOKING]
    assert sessions.get("cdc_worker") == [CDC]
    assert not {"queue", "search"} & set(sessions)
