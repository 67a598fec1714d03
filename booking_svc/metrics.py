"""The booking service's own metrics (the gRPC server's are in ticketing_common.metrics).

The sale's figures an operator watches per event (holds taken and refused by reason, tickets
held, confirms, bookings confirmed) carry an ``event_id`` label, kept to ``EVENT_CAP`` values
per process by ``BoundedLabel``: past the cap a new event is counted as ``other``. A refusal
whose event the service never learnt (a seat another buyer's Redis lock turned away before
Postgres was asked: the fast path keeps the database out of it) is counted as ``unknown``.
Latency stays global (``grpc_server_handling_seconds`` by method): a histogram per event would
multiply its 14 buckets by every event on sale.
"""

from __future__ import annotations

from prometheus_client import Counter

from ticketing_common.metrics import BoundedLabel

# Events one booking process labels by id; an operator watches a handful of sales at a time.
EVENT_CAP = 100
UNKNOWN_EVENT = "unknown"

_EVENT = BoundedLabel(cap=EVENT_CAP)


def event_label(event_id: str | None) -> str:
    """The ``event_id`` label of a sale's series: the id, ``other`` past the cap, ``unknown``
    when the service does not know the event (those two never take a place under the cap)."""
    return _EVENT(event_id) if event_id else UNKNOWN_EVENT


HOLDS = Counter(
    "ticketing_holds_total",
    "Reservation requests, by event and outcome: TAKEN, or the reason they were refused.",
    ["event_id", "outcome"],
)
BEST_AVAILABLE = Counter(
    "ticketing_best_available_total",
    "Best-available reservation requests (also counted in ticketing_holds_total), by event and"
    " outcome: TAKEN, or the reason they were refused.",
    ["event_id", "outcome"],
)
BEST_PICKS = Counter(
    "ticketing_best_available_picks_total",
    "How best-available requests were answered: held (a block proposed by the process's seat"
    " picture), refused (a proposal Postgres refused: seats taken elsewhere, or the sale's"
    " checks), exact (hold_best_available itself answered).",
    ["outcome"],
)
TICKETS_HELD = Counter("ticketing_tickets_held_total", "Tickets put on hold.", ["event_id"])
CONFIRMS = Counter(
    "ticketing_confirms_total",
    "Confirm requests, by event and outcome: CONFIRMED, or the reason they failed.",
    ["event_id", "outcome"],
)
BOOKINGS_CONFIRMED = Counter(
    "ticketing_bookings_confirmed_total", "Bookings paid and sold, by event.", ["event_id"]
)
PAYMENTS = Counter(
    "ticketing_payments_total",
    "Payments by outcome: succeeded, declined, refunded (taken but the hold was lost).",
    ["outcome"],
)
