// Pay for the seats on hold, with a test card, before the hold runs out.

import { timestampDate } from "@bufbuild/protobuf/wkt";

import { BookingStatus, type Booking } from "../../gen/ticketing/booking/v1/booking_pb";
import { booking, problem } from "../api";
import { h, replace } from "../dom";
import { countdown, money } from "../format";
import type { Cleanup } from "../main";
import * as state from "../state";

// Stripe test-mode payment methods (the local stack's fake Stripe knows them too).
const CARDS = [
  { id: "pm_card_visa", label: "Test Visa ending 4242 (approved)" },
  { id: "pm_card_chargeCustomerFail", label: "Test card that is declined" },
];

export async function renderCheckout(root: HTMLElement): Promise<Cleanup> {
  const held = state.currentHold();
  if (!held) {
    replace(
      root,
      h("h1", {}, "Checkout"),
      h("p", {}, "Nothing is on hold. ", h("a", { href: "#/" }, "Find an event"), " and pick seats."),
    );
    return () => undefined;
  }
  const { reservation } = held;
  const expires = reservation.expireTime ? timestampDate(reservation.expireTime) : new Date();
  const clock = h("strong", { "data-testid": "hold-countdown" }, countdown(expires));
  const timer = window.setInterval(() => {
    clock.textContent = countdown(expires);
    if (expires.getTime() <= Date.now()) {
      window.clearInterval(timer);
      notice.textContent = "Your hold ran out: the seats are on sale again.";
      pay.disabled = true;
    }
  }, 1000);
  const card = h(
    "select",
    { name: "card", "data-testid": "card" },
    CARDS.map((c) => h("option", { value: c.id }, c.label)),
  );
  const pay = h(
    "button",
    { class: "primary", onclick: () => void confirm(), "data-testid": "pay" },
    `Pay ${money(reservation.total)}`,
  );
  const cancel = h("button", { onclick: () => void release() }, "Release the seats");
  const notice = h("p", { class: "error", role: "alert", "data-testid": "checkout-error" });
  const panel = h(
    "section",
    { class: "checkout", "data-testid": "checkout" },
    h("h1", {}, "Checkout"),
    h("p", { class: "lead" }, held.eventName),
    h(
      "ul",
      { class: "tickets" },
      reservation.ticketIds.map((id) => h("li", {}, held.labels[id] ?? id)),
    ),
    h("p", {}, "Total ", h("strong", { "data-testid": "total" }, money(reservation.total))),
    h("p", { class: "muted" }, "Held for you for ", clock, " more."),
    h("label", {}, "Card ", card),
    h("div", { class: "actions" }, pay, cancel),
    notice,
  );
  replace(root, panel);
  return () => window.clearInterval(timer);

  async function confirm(): Promise<void> {
    notice.textContent = "";
    pay.disabled = true;
    try {
      const [first, ...rest] = reservation.ticketIds;
      const done = await booking.confirmBooking({
        ticketId: first,
        ticketIds: rest,
        paymentDetails: { paymentMethodId: card.value },
        requestId: crypto.randomUUID(),
      });
      window.clearInterval(timer);
      state.setHold(null);
      replace(root, confirmation(done, held?.labels ?? {}, held?.eventName ?? ""));
    } catch (err) {
      notice.textContent = problem(err).text;
      pay.disabled = false;
    }
  }

  async function release(): Promise<void> {
    try {
      await booking.cancelReservation({ ticketIds: reservation.ticketIds });
      state.setHold(null);
      window.location.hash = `#/event/${reservation.eventId}`;
    } catch (err) {
      notice.textContent = problem(err).text;
    }
  }
}

function confirmation(done: Booking, labels: Record<string, string>, eventName: string): HTMLElement {
  const confirmed = done.status === BookingStatus.CONFIRMED;
  return h(
    "section",
    { class: "confirmation", "data-testid": "confirmation" },
    h("h1", {}, confirmed ? "Booking confirmed" : "Payment in progress"),
    h("p", { class: "lead" }, eventName),
    h("ul", { class: "tickets" }, done.ticketIds.map((id) => h("li", {}, labels[id] ?? id))),
    h("p", {}, "Paid ", h("strong", {}, money(done.total))),
    h("p", { class: "muted" }, "Booking ", h("code", { "data-testid": "booking-id" }, done.id)),
    h("p", {}, h("a", { href: "#/bookings" }, "See all my bookings")),
  );
}
