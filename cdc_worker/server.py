"""Wiring of the CDC worker: the replication loop as the server's background job, and a gRPC
health endpoint (``TICKETING_LISTEN``) that says NOT_SERVING until the index is built and
streaming, and again whenever the loop cannot make progress (Postgres or the search engine
unreachable). Lag and slot size are logged every ``TICKETING_CDC_STATUS_INTERVAL_SECONDS``
("replication status" lines).

Active/standby: every worker takes the slot's advisory lock before it streams
(``PgActiveLock``). A worker standing by answers SERVING on the overall health (it is fine, and
ready to take over) and NOT_SERVING on ``ACTIVE_SERVICE``, which says SERVING only on the one
worker that holds the lock and streams; ``ticketing status`` reads the role from it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from grpc_health.v1 import health_pb2

from cdc_worker.adapters.index import EngineIndex
from cdc_worker.adapters.postgres import PgActiveLock, PgCatalog, PgReplicationStream
from cdc_worker.replicator import Options, Replicator
from cdc_worker.settings import CdcSettings
from search_svc.adapters.engine import auth_from, connect
from ticketing_common import mesh
from ticketing_common.server import ServiceServer, build_server

log = logging.getLogger("cdc.server")

HEALTH_RESYNC_SECONDS = 2.0
STOP_TIMEOUT_SECONDS = 10.0
# The health service name that is SERVING only on the active worker (the lock's holder).
ACTIVE_SERVICE = mesh.CDC_ACTIVE_HEALTH


async def create_server(settings: CdcSettings) -> ServiceServer:
    client = connect(
        settings.search_url,
        request_timeout=settings.search_timeout_seconds,
        engine=settings.search_engine,
        auth=auth_from(settings),
    )
    # NOT_SERVING until the first session streams: a stack that says "up" can search.
    healthy = threading.Event()

    active = threading.Event()
    standby = threading.Event()

    def on_health(ok: bool) -> None:
        (healthy.set if ok else healthy.clear)()

    def on_role(role: str) -> None:
        (active.set if role == "active" else active.clear)()
        (standby.set if role == "standby" else standby.clear)()

    replicator = Replicator(
        open_catalog=lambda: PgCatalog(settings.database_url, slot=settings.cdc_slot),
        open_stream=lambda: PgReplicationStream(
            settings.database_url, slot=settings.cdc_slot, publication=settings.cdc_publication
        ),
        index=EngineIndex(client),
        options=Options(
            slot=settings.cdc_slot,
            batch_max_seconds=settings.cdc_batch_max_seconds,
            batch_max_events=settings.cdc_batch_max_events,
            status_interval=settings.cdc_status_interval_seconds,
        ),
        on_health=on_health,
        open_lock=lambda: PgActiveLock(settings.database_url, slot=settings.cdc_slot),
        on_role=on_role,
    )

    async def replicate() -> None:
        """Run the (blocking, psycopg2) loop on its own thread; mirror its health."""
        stop = threading.Event()
        thread = threading.Thread(
            target=replicator.run, args=(stop,), name="replication", daemon=True
        )
        thread.start()
        shown: tuple[bool, bool] | None = None
        shown_at = 0.0
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        try:
            while thread.is_alive():
                streaming = active.is_set() and healthy.is_set()
                ok = streaming or standby.is_set()
                if (ok, streaming) != shown or time.monotonic() - shown_at > HEALTH_RESYNC_SECONDS:
                    await server.health.set_own("", serving if ok else not_serving)
                    await server.health.set_own(
                        ACTIVE_SERVICE, serving if streaming else not_serving
                    )
                    shown, shown_at = (ok, streaming), time.monotonic()
                await asyncio.sleep(0.1)
            raise RuntimeError("the replication thread ended")
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, STOP_TIMEOUT_SECONDS)

    async def close() -> None:
        client.close()

    server = build_server(settings, [], background=[replicate], cleanups=[close])
    return server
