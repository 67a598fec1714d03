"""The CDC worker's metrics: how far search lags behind Postgres."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ticketing_common.metrics import LATENCY_BUCKETS

LAG = Histogram(
    "ticketing_cdc_lag_seconds",
    "From a transaction's commit in Postgres to its documents written to the search index.",
    buckets=LATENCY_BUCKETS,
)
LAST_LAG = Gauge(
    "ticketing_cdc_last_lag_seconds",
    "The lag of the last transaction written to the index.",
    multiprocess_mode="livemax",
)
RETAINED_WAL = Gauge(
    "ticketing_cdc_slot_retained_wal_bytes",
    "WAL the replication slot keeps: the server's position minus the worker's confirmed one.",
    multiprocess_mode="livemax",
)
TRANSACTIONS = Counter("ticketing_cdc_transactions_total", "Transactions replicated.")
REBUILDS = Counter("ticketing_cdc_index_rebuilds_total", "Full rebuilds of the search index.")
