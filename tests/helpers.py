"""Helpers the integration tests share: REST calls through the gateway, channels straight to a
service's port (mutual TLS), error reasons, and catalog fixtures created the way an operator
would (through the gateway's gRPC API)."""

import datetime as dt
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from ticketing.catalog.v1 import catalog_pb2
from ticketing.common.v1 import common_pb2

from deploy.stack import certs
from deploy.stack.state import StateDir
from ticketing_common.tls import channel_credentials


def rest(stack, path: str, *, method: str = "GET", body=None, token: str | None = None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://{stack.gateway}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (http only)
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"{}")


def service_credentials(stack, holder: str = certs.OPERATOR) -> grpc.ChannelCredentials:
    """A client certificate of the stack's development CA (deploy/stack/certs.py): the
    operator's by default, which a service lets in but believes no identity header from."""
    return channel_credentials(certs.files_of(StateDir(Path(stack.state_dir)), holder))


def service_address(stack, component: str) -> str:
    return f"127.0.0.1:{stack.ports[component]}"


def service_channel(stack, component: str, holder: str = certs.OPERATOR, options=()):
    """A channel straight to a component's port, past the gateway (mutual TLS)."""
    return grpc.secure_channel(
        service_address(stack, component), service_credentials(stack, holder), options=options
    )


def aio_service_channel(stack, component: str, holder: str = certs.OPERATOR, options=()):
    return grpc.aio.secure_channel(
        service_address(stack, component), service_credentials(stack, holder), options=options
    )


def error_reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info.reason


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def make_venue(catalog, operator, sections: int, rows: int, seats: int, **fields):
    seat_map = catalog_pb2.SeatMap(
        sections=[
            catalog_pb2.Section(
                name=f"S{s:02d}",
                price_tier="premium" if s == 0 else "standard",
                rows=[catalog_pb2.Row(label=str(r + 1), seat_count=seats) for r in range(rows)],
            )
            for s in range(sections)
        ]
    )
    venue = catalog_pb2.Venue(
        name=fields.get("name", f"Test Hall {uuid.uuid4().hex[:6]}"),
        city="Lisbon",
        country_code="PT",
        location=common_pb2.GeoPoint(latitude=38.72, longitude=-9.14),
        time_zone="Europe/Lisbon",
        seat_map=seat_map,
    )
    return catalog.CreateVenue(catalog_pb2.CreateVenueRequest(venue=venue), metadata=operator)


def make_event(catalog, operator, venue_id: str, *, days_ahead: int, tiers=None, **fields):
    """An event on sale now at the venue, with its tickets generated; ``fields`` are extra
    catalog_pb2.Event fields (max_tickets_per_user, queue_policy, ...)."""
    performer = catalog.CreatePerformer(
        catalog_pb2.CreatePerformerRequest(
            performer=catalog_pb2.Performer(
                name=f"The Testers {uuid.uuid4().hex[:6]}", genre="rock"
            )
        ),
        metadata=operator,
    )
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days_ahead)
    event = catalog.CreateEvent(
        catalog_pb2.CreateEventRequest(
            event=catalog_pb2.Event(
                name="Integration Night",
                type=catalog_pb2.EVENT_TYPE_CONCERT,
                venue_id=venue_id,
                performer_id=performer.id,
                start_time=ts(start),
                end_time=ts(start + dt.timedelta(hours=3)),
                currency_code="EUR",
                **fields,
            )
        ),
        metadata=operator,
    )
    catalog.GenerateTickets(
        catalog_pb2.GenerateTicketsRequest(
            event_id=event.id, tier_prices_minor=tiers or {"premium": 15000, "standard": 6000}
        ),
        metadata=operator,
    )
    return event
