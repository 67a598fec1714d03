"""Translation between catalog protos and domain objects, nothing else."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from google.api import httpbody_pb2
from google.protobuf import descriptor, field_mask_pb2, json_format, message, timestamp_pb2
from ticketing.catalog.v1 import catalog_pb2
from ticketing.common.v1 import common_pb2

from catalog_svc.availability import SeatStates, SectionRuns, TicketState, Update, seat_order
from catalog_svc.domain import (
    Event,
    EventFilter,
    EventPage,
    Performer,
    QueuePolicy,
    Row,
    SeatMap,
    Section,
    Ticket,
    TicketSummary,
    Venue,
    parse_id,
)
from catalog_svc.seat_layout import Block, RowLayout, SeatMapLayout, SectionLayout
from ticketing_common.errors import InvalidArgument
from ticketing_common.event_types import EVENT_TYPE_FROM_PROTO, EVENT_TYPE_TO_PROTO

STATUS_TO_PROTO = {
    "available": catalog_pb2.TICKET_STATUS_AVAILABLE,
    "held": catalog_pb2.TICKET_STATUS_HELD,
    "booked": catalog_pb2.TICKET_STATUS_BOOKED,
}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}

# What an update may change (AIP-134): an empty mask means all of these.
VENUE_WRITABLE = (
    "name",
    "address",
    "city",
    "region",
    "country_code",
    "location",
    "time_zone",
    "seat_map",
)
PERFORMER_WRITABLE = ("name", "description", "genre")
EVENT_WRITABLE = (
    "name",
    "description",
    "type",
    "venue_id",
    "performer_id",
    "start_time",
    "end_time",
    "on_sale_time",
    "queue_policy",
    "max_tickets_per_user",
    "currency_code",
)

_Message = TypeVar("_Message", bound=message.Message)
_Record = TypeVar("_Record", Venue, Performer, Event)


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(ts: timestamp_pb2.Timestamp, field: str) -> dt.datetime:
    if ts.seconds == 0 and ts.nanos == 0:
        raise InvalidArgument(f"{field} is required", metadata={"field": field})
    return ts.ToDatetime(tzinfo=dt.UTC)


def money(amount_minor: int, currency: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, amount_minor=amount_minor)


# --- to proto --------------------------------------------------------------------------------


def venue_to_proto(venue: Venue) -> catalog_pb2.Venue:
    return catalog_pb2.Venue(
        id=venue.id,
        name=venue.name,
        address=venue.address,
        city=venue.city,
        region=venue.region,
        country_code=venue.country_code,
        location=common_pb2.GeoPoint(latitude=venue.latitude, longitude=venue.longitude),
        time_zone=venue.time_zone,
        seat_map=seat_map_to_proto(venue.seat_map),
        capacity=venue.capacity,
        create_time=timestamp(venue.create_time),
        update_time=timestamp(venue.update_time),
    )


def _point(p: tuple[float, float]) -> catalog_pb2.Point:
    return catalog_pb2.Point(x=p[0], y=p[1])


def _section_layout(layout: SectionLayout) -> catalog_pb2.SectionLayout:
    if layout.block is not None:
        b = layout.block
        return catalog_pb2.SectionLayout(
            block=catalog_pb2.RotatedBlock(
                center=_point(b.center),
                width=b.width,
                depth=b.depth,
                rotation_degrees=b.rotation_degrees,
            )
        )
    return catalog_pb2.SectionLayout(
        polygon=catalog_pb2.Polygon(points=[_point(p) for p in layout.polygon])
    )


def seat_map_to_proto(seat_map: SeatMap) -> catalog_pb2.SeatMap:
    proto = catalog_pb2.SeatMap()
    for s in seat_map.sections:
        section = proto.sections.add(
            name=s.name, price_tier=s.price_tier, standing_capacity=s.standing_capacity
        )
        if s.layout is not None:
            section.layout.CopyFrom(_section_layout(s.layout))
        for r in s.rows:
            row = section.rows.add(label=r.label, seat_count=r.seats)
            if r.layout is not None:
                row.layout.CopyFrom(
                    catalog_pb2.RowLayout(
                        start=_point(r.layout.start), end=_point(r.layout.end), curve=r.layout.curve
                    )
                )
    if seat_map.layout is not None:
        proto.layout.CopyFrom(
            catalog_pb2.SeatMapLayout(
                width=seat_map.layout.width,
                height=seat_map.layout.height,
                stage=catalog_pb2.Polygon(points=[_point(p) for p in seat_map.layout.stage]),
            )
        )
    return proto


def performer_to_proto(performer: Performer) -> catalog_pb2.Performer:
    return catalog_pb2.Performer(
        id=performer.id,
        name=performer.name,
        description=performer.description,
        genre=performer.genre,
        create_time=timestamp(performer.create_time),
        update_time=timestamp(performer.update_time),
    )


def summary_to_proto(summary: TicketSummary, currency: str) -> catalog_pb2.TicketSummary:
    proto = catalog_pb2.TicketSummary(
        total=summary.total,
        available=summary.available,
        held=summary.held,
        booked=summary.booked,
        sold_out=summary.sold_out,
    )
    if summary.min_available_price_minor is not None:
        proto.min_available_price.CopyFrom(money(summary.min_available_price_minor, currency))
    return proto


def event_to_proto(
    event: Event,
    *,
    venue: Venue | None = None,
    performer: Performer | None = None,
    summary: TicketSummary | None = None,
    tickets: list[Ticket] | None = None,
    etag: str = "",
) -> catalog_pb2.Event:
    q = event.queue_policy
    proto = catalog_pb2.Event(
        id=event.id,
        name=event.name,
        description=event.description,
        type=EVENT_TYPE_TO_PROTO[event.type],
        venue_id=event.venue_id,
        performer_id=event.performer_id,
        start_time=timestamp(event.start_time),
        end_time=timestamp(event.end_time),
        on_sale_time=timestamp(event.on_sale_time),
        queue_policy=catalog_pb2.QueuePolicy(
            enabled=q.enabled,
            admission_rate_per_minute=q.admission_rate_per_minute,
            max_active_users=q.max_active_users,
            admission_ttl_seconds=q.admission_ttl_seconds,
        ),
        max_tickets_per_user=event.max_tickets_per_user,
        currency_code=event.currency,
        create_time=timestamp(event.create_time),
        update_time=timestamp(event.update_time),
        etag=etag,
    )
    if venue is not None:
        proto.venue.CopyFrom(venue_to_proto(venue))
    if performer is not None:
        proto.performer.CopyFrom(performer_to_proto(performer))
    if summary is not None:
        proto.ticket_summary.CopyFrom(summary_to_proto(summary, event.currency))
    if tickets:
        add = proto.tickets.add
        currency = event.currency
        for t in tickets:
            add(
                id=t.id,
                event_id=event.id,
                section=t.section,
                row=t.row,
                seat=t.seat if t.row else "",
                price=common_pb2.Money(currency_code=currency, amount_minor=t.price_minor),
                status=STATUS_TO_PROTO[t.status],
            )
    return proto


def render_event_page(page: EventPage, summary: TicketSummary, etag: str) -> bytes:
    """The cached form of an event page: its FULL view, serialized (``ports.RenderPage``)."""
    proto = event_to_proto(
        page.event,
        venue=page.venue,
        performer=page.performer,
        summary=summary,
        tickets=page.tickets,
        etag=etag,
    )
    return proto.SerializeToString()


def basic_view(payload: bytes) -> catalog_pb2.Event:
    """The BASIC view of a rendered page: everything but the tickets."""
    event = catalog_pb2.Event.FromString(payload)
    del event.tickets[:]
    return event


def read_mask_paths(mask: field_mask_pb2.FieldMask) -> tuple[str, ...]:
    """GetEvent's read_mask, checked against the Event (AIP-157): its paths, or
    INVALID_ARGUMENT naming read_mask and the paths the Event does not have."""
    paths = tuple(mask.paths)
    unknown = [
        p for p in paths if not field_mask_pb2.FieldMask(paths=[p]).IsValidForDescriptor(_EVENT)
    ]
    if unknown:
        raise InvalidArgument(
            f"read_mask: the event has no field {', '.join(unknown)}",
            metadata={"field": "read_mask", "paths": ",".join(unknown)},
        )
    return paths


_EVENT = cast(descriptor.Descriptor, catalog_pb2.Event.DESCRIPTOR)


def event_view(payload: bytes, view: int, paths: tuple[str, ...]) -> bytes:
    """A view of a rendered page (its FULL view, serialized): BASIC drops the tickets,
    AVAILABILITY replaces them with their statuses as runs per section (WatchAvailability's
    snapshot), and a read mask keeps only the fields it names."""
    event = catalog_pb2.Event.FromString(payload)
    if view == catalog_pb2.EVENT_VIEW_AVAILABILITY:
        event.availability.CopyFrom(availability_snapshot(event))
    if view in (catalog_pb2.EVENT_VIEW_BASIC, catalog_pb2.EVENT_VIEW_AVAILABILITY):
        del event.tickets[:]
    if paths:
        masked = catalog_pb2.Event()
        field_mask_pb2.FieldMask(paths=list(paths)).MergeMessage(event, masked)
        event = masked
    return event.SerializeToString()


def availability_snapshot(event: catalog_pb2.Event) -> catalog_pb2.AvailabilitySnapshot:
    """The page's tickets as WatchAvailability's first message has them: runs of one status
    per section, in the seat map's order (``catalog_svc.availability``)."""
    states = [
        # A standing place has no seat label on the page; its tickets come in place order.
        TicketState(t.id, t.section, t.row, t.seat, STATUS_FROM_PROTO[t.status])
        for t in event.tickets
    ]
    ordered = seat_order(seat_map_from_proto(event.venue.seat_map), states)
    return snapshot_to_proto(SeatStates(ordered).snapshot())


def snapshot_to_proto(snapshot: tuple[SectionRuns, ...]) -> catalog_pb2.AvailabilitySnapshot:
    proto = catalog_pb2.AvailabilitySnapshot()
    for section in snapshot:
        proto.sections.add(
            section=section.section,
            runs=[
                catalog_pb2.StateRun(status=STATUS_TO_PROTO[status], count=count)
                for status, count in section.runs
            ],
        )
    return proto


def ticket_to_proto(ticket: Ticket, event_id: str, currency: str) -> catalog_pb2.Ticket:
    return catalog_pb2.Ticket(
        id=ticket.id,
        event_id=event_id,
        section=ticket.section,
        row=ticket.row,
        # A standing place (no row) has no seat number to show.
        seat=ticket.seat if ticket.row else "",
        price=money(ticket.price_minor, currency),
        status=STATUS_TO_PROTO[ticket.status],
    )


# --- from proto ------------------------------------------------------------------------------


def seat_map_from_proto(proto: catalog_pb2.SeatMap) -> SeatMap:
    return SeatMap(
        tuple(
            Section(
                s.name,
                s.price_tier,
                tuple(
                    Row(
                        r.label,
                        r.seat_count,
                        RowLayout(
                            _point_from(r.layout.start), _point_from(r.layout.end), r.layout.curve
                        )
                        if r.HasField("layout")
                        else None,
                    )
                    for r in s.rows
                ),
                s.standing_capacity,
                _section_layout_from(s.layout) if s.HasField("layout") else None,
            )
            for s in proto.sections
        ),
        SeatMapLayout(
            proto.layout.width,
            proto.layout.height,
            tuple(_point_from(p) for p in proto.layout.stage.points),
        )
        if proto.HasField("layout")
        else None,
    )


def _point_from(p: catalog_pb2.Point) -> tuple[float, float]:
    return (p.x, p.y)


def _section_layout_from(proto: catalog_pb2.SectionLayout) -> SectionLayout:
    if proto.HasField("block"):
        b = proto.block
        return SectionLayout(
            block=Block(_point_from(b.center), b.width, b.depth, b.rotation_degrees)
        )
    return SectionLayout(polygon=tuple(_point_from(p) for p in proto.polygon.points))


def venue_from_proto(proto: catalog_pb2.Venue, venue_id: str = "") -> Venue:
    return Venue(
        id=venue_id,
        name=proto.name,
        address=proto.address,
        city=proto.city,
        region=proto.region,
        country_code=proto.country_code.upper(),
        latitude=proto.location.latitude,
        longitude=proto.location.longitude,
        time_zone=proto.time_zone or "UTC",
        seat_map=seat_map_from_proto(proto.seat_map),
    )


def performer_from_proto(proto: catalog_pb2.Performer, performer_id: str = "") -> Performer:
    return Performer(
        id=performer_id, name=proto.name, description=proto.description, genre=proto.genre
    )


def event_from_proto(proto: catalog_pb2.Event, event_id: str = "") -> Event:
    if proto.type not in EVENT_TYPE_FROM_PROTO:
        raise InvalidArgument("type is required", metadata={"field": "type"})
    start = from_timestamp(proto.start_time, "start_time")
    end = (
        proto.end_time.ToDatetime(tzinfo=dt.UTC)
        if proto.HasField("end_time")
        else start + dt.timedelta(hours=3)
    )
    on_sale = (
        proto.on_sale_time.ToDatetime(tzinfo=dt.UTC)
        if proto.HasField("on_sale_time")
        else dt.datetime.now(dt.UTC)
    )
    q = proto.queue_policy
    defaults = QueuePolicy()
    return Event(
        id=event_id,
        name=proto.name,
        description=proto.description,
        type=EVENT_TYPE_FROM_PROTO[proto.type],
        venue_id=parse_id(proto.venue_id, "venue_id"),
        performer_id=parse_id(proto.performer_id, "performer_id"),
        start_time=start,
        end_time=end,
        on_sale_time=min(on_sale, start),
        queue_policy=QueuePolicy(
            enabled=q.enabled,
            admission_rate_per_minute=q.admission_rate_per_minute
            or defaults.admission_rate_per_minute,
            max_active_users=q.max_active_users or defaults.max_active_users,
            admission_ttl_seconds=q.admission_ttl_seconds or defaults.admission_ttl_seconds,
        ),
        max_tickets_per_user=proto.max_tickets_per_user or 8,
        currency=(proto.currency_code or "USD").upper(),
    )


def event_filter_from_proto(request: catalog_pb2.ListEventsRequest) -> EventFilter:
    return EventFilter(
        performer_id=parse_id(request.performer_id, "performer_id")
        if request.performer_id
        else None,
        venue_id=parse_id(request.venue_id, "venue_id") if request.venue_id else None,
        type=EVENT_TYPE_FROM_PROTO.get(request.type),
        start_after=request.start_time_after.ToDatetime(tzinfo=dt.UTC)
        if request.HasField("start_time_after")
        else None,
        start_before=request.start_time_before.ToDatetime(tzinfo=dt.UTC)
        if request.HasField("start_time_before")
        else None,
    )


# --- updates (AIP-134): the request's fields named in the mask, over the record as it is -------


def merge(
    current: _Message, update: _Message, mask: field_mask_pb2.FieldMask, writable: tuple[str, ...]
) -> _Message:
    """``current`` with the fields named in the mask (all writable fields when empty) taken
    from ``update``; a field outside ``writable`` is INVALID_ARGUMENT naming update_mask."""
    paths = list(mask.paths) or list(writable)
    unknown = [p for p in paths if p.split(".")[0] not in writable]
    if unknown:
        raise InvalidArgument(
            f"cannot update: {', '.join(unknown)}", metadata={"field": "update_mask"}
        )
    merged = type(current)()
    merged.CopyFrom(current)
    field_mask_pb2.FieldMask(paths=paths).MergeMessage(
        update, merged, replace_message_field=True, replace_repeated_field=True
    )
    return merged


def _update(
    to_proto: Callable[[_Record], _Message],
    from_proto: Callable[[_Message, str], _Record],
    changes: _Message,
    mask: field_mask_pb2.FieldMask,
    writable: tuple[str, ...],
) -> Callable[[_Record], _Record]:
    def change(current: _Record) -> _Record:
        return from_proto(merge(to_proto(current), changes, mask, writable), current.id)

    return change


def venue_update(request: catalog_pb2.UpdateVenueRequest) -> Callable[[Venue], Venue]:
    return _update(
        venue_to_proto, venue_from_proto, request.venue, request.update_mask, VENUE_WRITABLE
    )


def performer_update(
    request: catalog_pb2.UpdatePerformerRequest,
) -> Callable[[Performer], Performer]:
    return _update(
        performer_to_proto,
        performer_from_proto,
        request.performer,
        request.update_mask,
        PERFORMER_WRITABLE,
    )


def event_update(request: catalog_pb2.UpdateEventRequest) -> Callable[[Event], Event]:
    return _update(
        event_to_proto, event_from_proto, request.event, request.update_mask, EVENT_WRITABLE
    )


def availability_update_to_proto(update: Update) -> catalog_pb2.AvailabilityUpdate:
    proto = catalog_pb2.AvailabilityUpdate(read_time=timestamp(update.read_time))
    if update.snapshot is not None:
        proto.snapshot.CopyFrom(snapshot_to_proto(update.snapshot))
    for t in update.changes:
        proto.changes.add(
            ticket_id=t.id,
            section=t.section,
            row=t.row,
            seat=t.seat if t.row else "",
            status=STATUS_TO_PROTO[t.status],
        )
    return proto


def encode_availability_update(update: Update) -> bytes:
    """Encoded once per update, whatever the number of watchers it goes to."""
    return availability_update_to_proto(update).SerializeToString()


# --- the REST event page: GetEvent's answer as JSON, printed here once per page version -------
#
# What Envoy's transcoder printed for GetEvent (always_print_primitive_fields, lowerCamelCase
# names, no whitespace): the same fields in field-number order, every field without presence
# printed even at its default, int64 as strings, enums by name. protobuf's own JSON printer
# makes the document (json_format, the Python twin of the C++ printer Envoy uses), except for
# the tickets, which are most of the page and printed by ``_ticket_json`` (equal to
# json_format's output for a Ticket, tests/unit/test_catalog_pages.py checks it) in a
# fraction of the time.

_TICKETS_EMPTY = '"tickets":[]'
JSON = "application/json"


def http_body(content_type: str, data: bytes) -> bytes:
    """A serialized google.api.HttpBody: what the transcoder sends as the HTTP body itself."""
    body: bytes = httpbody_pb2.HttpBody(content_type=content_type, data=data).SerializeToString()
    return body


TicketJsonMemo = dict[tuple[str, int, int], str]
"""A ticket's printed JSON by (id, status, price): what changes between versions of a page is
a few tickets' status, so a memo kept from the previous version prints the next one mostly by
look-ups (a ticket's place and currency never change once generated)."""


def event_json(payload: bytes, memo: TicketJsonMemo | None = None) -> bytes:
    """A serialized Event (any view) as the REST page's JSON, UTF-8."""
    event = catalog_pb2.Event.FromString(payload)
    tickets = list(event.tickets)
    del event.tickets[:]
    text = json.dumps(
        _in_field_order(
            json_format.MessageToDict(event, always_print_fields_with_no_presence=True), _EVENT
        ),
        separators=(",", ":"),
        ensure_ascii=False,
    )
    text = _MARKED_DOUBLE.sub(r"\1", text)
    if tickets:
        # Quotes inside JSON strings are escaped, so this is the tickets field itself.
        printed = _ticket_printer()
        if memo is None:
            parts = [printed(t) for t in tickets]
        else:
            parts = []
            for t in tickets:
                key = (t.id, t.status, t.price.amount_minor)
                done = memo.get(key)
                if done is None:
                    done = memo[key] = printed(t)
                parts.append(done)
        text = text.replace(_TICKETS_EMPTY, '"tickets":[' + ",".join(parts) + "]", 1)
    return text.encode()


def _in_field_order(value: Any, desc: descriptor.Descriptor | None) -> Any:
    """json_format's dict with each message's fields in field-number order (as the C++ printer
    puts them) and doubles marked to be printed as the C++ printer does (10, not 10.0)."""
    if isinstance(value, dict) and desc is not None:
        ordered = {}
        for field in sorted(desc.fields, key=lambda f: f.number):
            if field.json_name in value:
                sub = field.message_type
                if sub is not None and sub.GetOptions().map_entry:
                    sub = None  # a map's keys are data, not fields
                ordered[field.json_name] = _in_field_order(value[field.json_name], sub)
        return ordered
    if isinstance(value, list):
        return [_in_field_order(item, desc) for item in value]
    if isinstance(value, float):
        return _DOUBLE + _cpp_double(value) + _DOUBLE_END
    return value


# A double travels through json.dumps as a marked string, then loses its quotes and marks:
# json.dumps prints Python's shortest repr (53.94706767363466), the C++ printer SimpleDtoa's
# (%.15g, or %.17g when that does not read back: 53.947067673634663).
_DOUBLE, _DOUBLE_END = "\x00\x01double:", "\x00"
_MARKED_DOUBLE = re.compile(r'"\\u0000\\u0001double:([-+.0-9eE]+)\\u0000"')


def _cpp_double(value: float) -> str:
    text = f"{value:.15g}"
    if float(text) != value:
        text = f"{value:.17g}"
    return text


def _ticket_printer() -> Callable[[catalog_pb2.Ticket], str]:
    strings: dict[str, str] = {}

    def quoted(text: str) -> str:
        done = strings.get(text)
        if done is None:
            done = strings[text] = json.dumps(text, ensure_ascii=False)
        return done

    statuses = {
        number: quoted(value.name)
        for number, value in catalog_pb2.TicketStatus.DESCRIPTOR.values_by_number.items()
    }

    def printed(t: catalog_pb2.Ticket) -> str:
        price = t.price
        return (
            f'{{"id":{quoted(t.id)},"eventId":{quoted(t.event_id)},'
            f'"section":{quoted(t.section)},"row":{quoted(t.row)},"seat":{quoted(t.seat)},'
            + (
                f'"price":{{"currencyCode":{quoted(price.currency_code)},'
                f'"amountMinor":"{price.amount_minor}"}},'
                if t.HasField("price")
                else ""
            )
            + f'"status":{statuses.get(t.status) or t.status}}}'
        )

    return printed
