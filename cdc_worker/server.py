"""Wiring of the CDC worker: a health endpoint now; the replication loop lands with the
search issue and runs as the server's background job."""

from __future__ import annotations

from cdc_worker.settings import CdcSettings
from ticketing_common.server import ServiceServer, build_server


async def create_server(settings: CdcSettings) -> ServiceServer:
    return build_server(settings, [])
