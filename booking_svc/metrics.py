"""The booking service's own metrics (the gRPC server's are in ticketing_common.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

HOLDS = Counter(
    "ticketing_holds_total",
    "Reservation requests, by outcome: TAKEN, or the reason they were refused.",
    ["outcome"],
)
BEST_AVAILABLE = Counter(
    "ticketing_best_available_total",
    "Best-available reservation requests (also counted in ticketing_holds_total), by outcome:"
    " TAKEN, or the reason they were refused.",
    ["outcome"],
)
TICKETS_HELD = Counter("ticketing_tickets_held_total", "Tickets put on hold.")
CONFIRMS = Counter(
    "ticketing_confirms_total",
    "Confirm requests, by outcome: CONFIRMED, or the reason they failed.",
    ["outcome"],
)
BOOKINGS_CONFIRMED = Counter("ticketing_bookings_confirmed_total", "Bookings paid and sold.")
PAYMENTS = Counter(
    "ticketing_payments_total",
    "Payments by outcome: succeeded, declined, refunded (taken but the hold was lost).",
    ["outcome"],
)
