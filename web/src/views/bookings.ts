// The signed-in buyer's bookings, newest first.

import { BookingStatus, type Booking } from "../../gen/ticketing/booking/v1/booking_pb";
import { EventView } from "../../gen/ticketing/catalog/v1/catalog_pb";
import { booking, catalog, problem } from "../api";
import { h, replace } from "../dom";
import { money, when } from "../format";
import type { Cleanup } from "../main";
import * as session from "../session";

export async function renderBookings(root: HTMLElement): Promise<Cleanup> {
  if (!session.current()) {
    replace(root, h("h1", {}, "My bookings"), h("p", {}, "Sign in to see your bookings."));
    return () => undefined;
  }
  try {
    const found = await booking.listBookings({ pageSize: 50 });
    const names = await eventNames(found.bookings);
    replace(
      root,
      h("h1", {}, "My bookings"),
      found.bookings.length === 0
        ? h("p", {}, "No bookings yet.")
        : h(
            "table",
            { class: "bookings", "data-testid": "bookings" },
            h(
              "thead",
              {},
              h("tr", {}, ["Booked", "Event", "Tickets", "Total", "Status"].map((c) => h("th", {}, c))),
            ),
            h(
              "tbody",
              {},
              found.bookings.map((b) =>
                h(
                  "tr",
                  {},
                  h("td", {}, when(b.confirmTime ?? b.createTime)),
                  h("td", {}, h("a", { href: `#/event/${b.eventId}` }, names.get(b.eventId) ?? b.eventId)),
                  h("td", {}, b.ticketIds.length),
                  h("td", {}, money(b.total)),
                  h("td", {}, status(b.status)),
                ),
              ),
            ),
          ),
    );
  } catch (err) {
    replace(root, h("h1", {}, "My bookings"), h("p", { class: "error" }, problem(err).text));
  }
  return () => undefined;
}

async function eventNames(bookings: Booking[]): Promise<Map<string, string>> {
  const ids = [...new Set(bookings.map((b) => b.eventId))];
  const events = await Promise.all(
    ids.map((eventId) =>
      catalog.getEvent({ eventId, view: EventView.BASIC }).catch(() => null),
    ),
  );
  return new Map(events.flatMap((e) => (e ? [[e.id, e.name] as [string, string]] : [])));
}

function status(value: BookingStatus): string {
  const name = BookingStatus[value] ?? "UNSPECIFIED";
  return name.charAt(0) + name.slice(1).toLowerCase();
}
