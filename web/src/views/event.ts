// One event: what, where and when, its seats by section, and (for a hot sale) the waiting
// queue, watched live, that admits the buyer before they may reserve.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";

import {
  EventView,
  TicketStatus,
  type Event,
  type Section,
  type Ticket,
} from "../../gen/ticketing/catalog/v1/catalog_pb";
import { QueueEntryState, type QueueEntry } from "../../gen/ticketing/queue/v1/queue_pb";
import { booking, catalog, isAborted, problem, queue } from "../api";
import { h, replace } from "../dom";
import { eventType, money, wait, when } from "../format";
import type { Cleanup } from "../main";
import * as session from "../session";
import * as state from "../state";

const DEFAULT_MAX_TICKETS = 8;
const MAX_TABS = 12;

export async function renderEvent(root: HTMLElement, eventId: string): Promise<Cleanup> {
  const stop = new AbortController();
  let event: Event;
  try {
    event = await catalog.getEvent({ eventId, view: EventView.BASIC });
  } catch (err) {
    replace(root, h("p", { class: "error" }, problem(err).text));
    return () => stop.abort();
  }
  const queued = event.queuePolicy?.enabled ?? false;
  const maxTickets = event.maxTicketsPerUser || DEFAULT_MAX_TICKETS;
  const picked = new Map<string, Ticket>();
  const notice = h("p", { class: "error", role: "alert", "data-testid": "event-error" });
  const seats = h("div", { class: "seats", "data-testid": "seat-list" });
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const reserve = h(
    "button",
    { class: "primary", disabled: true, onclick: () => void hold(), "data-testid": "reserve" },
    "Reserve",
  );
  const pickedLine = h("span", { "data-testid": "selection" }, "Pick up to ", maxTickets, " seats");
  const queuePanel = h("section", { class: "queue", "data-testid": "queue-panel" });

  const summary = event.ticketSummary;
  replace(
    root,
    h(
      "article",
      { class: "event" },
      h(
        "p",
        { class: "muted" },
        h("a", { href: "#/" }, "← All events"),
        session.current()?.role === "operator" && [
          " · ",
          h("a", { href: `#/operator/event/${encodeURIComponent(eventId)}`, "data-testid": "open-dashboard" }, "Live sale dashboard"),
        ],
      ),
      h("h1", { "data-testid": "event-name" }, event.name),
      h(
        "p",
        { class: "lead" },
        h("span", { class: "badge" }, eventType(event.type)),
        " ",
        when(event.startTime),
        " · ",
        event.venue ? `${event.venue.name}, ${event.venue.city}` : "",
      ),
      event.performer && h("p", { class: "muted" }, event.performer.name, " · ", event.performer.genre),
      event.description && h("p", {}, event.description),
      summary &&
        h(
          "p",
          { "data-testid": "availability" },
          summary.soldOut
            ? h("strong", {}, "Sold out")
            : [
                h("strong", {}, `${summary.available} of ${summary.total} tickets available`),
                ` · from ${money(summary.minAvailablePrice)}`,
              ],
        ),
      event.onSaleTime &&
        timestampDate(event.onSaleTime).getTime() > Date.now() &&
        h("p", { class: "muted" }, "On sale from ", when(event.onSaleTime)),
      queued ? queuePanel : null,
      h("h2", {}, "Seats"),
      tabs,
      seats,
      h("div", { class: "selection" }, pickedLine, reserve),
      notice,
    ),
  );

  const sections = event.venue?.seatMap?.sections ?? [];
  if (sections.length > MAX_TABS) {
    // A stadium has dozens of sections: a list to pick from rather than a wall of tabs.
    const pick = h(
      "select",
      { "aria-label": "Section", "data-testid": "section-select" },
      sections.map((s) => h("option", { value: s.name }, `${s.name} (${s.priceTier})`)),
    );
    pick.addEventListener("change", () => {
      const chosen = sections.find((s) => s.name === pick.value);
      if (chosen) void showSection(chosen);
    });
    tabs.append(pick);
  }
  sections.forEach((section, index) => {
    if (sections.length > MAX_TABS) return;
    tabs.append(
      h(
        "button",
        {
          role: "tab",
          class: "tab",
          "data-section": section.name,
          onclick: () => void showSection(section),
          "aria-selected": index === 0 ? "true" : "false",
        },
        section.name,
        h("small", {}, section.priceTier),
      ),
    );
  });
  if (sections[0]) await showSection(sections[0]);
  if (queued) void queueState();
  return () => stop.abort();

  async function showSection(section: Section): Promise<void> {
    for (const tab of tabs.querySelectorAll<HTMLButtonElement>("button")) {
      tab.setAttribute("aria-selected", String(tab.dataset.section === section.name));
    }
    replace(seats, h("p", { class: "muted" }, "Loading seats…"));
    try {
      const found = await catalog.listTickets({ eventId, section: section.name, pageSize: 5000 });
      const rows = new Map<string, Ticket[]>();
      for (const ticket of found.tickets) {
        rows.set(ticket.row, [...(rows.get(ticket.row) ?? []), ticket]);
      }
      if (rows.size === 0) {
        replace(seats, h("p", { class: "muted" }, "No tickets in this section."));
        return;
      }
      const byLabel = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true });
      replace(
        seats,
        [...rows]
          .sort(([a], [b]) => byLabel(a, b))
          .map(([row, tickets]) =>
            h(
              "div",
              { class: "row" },
              h("span", { class: "row-label" }, row),
              tickets.sort((a, b) => byLabel(a.seat, b.seat)).map(seat),
            ),
          ),
        h(
          "p",
          { class: "legend muted" },
          h("span", { class: "seat available" }, ""),
          " available ",
          h("span", { class: "seat picked" }, ""),
          " yours ",
          h("span", { class: "seat taken" }, ""),
          " held or sold",
        ),
      );
    } catch (err) {
      replace(seats, h("p", { class: "error" }, problem(err).text));
    }
  }

  function seat(ticket: Ticket): HTMLElement {
    const free = ticket.status === TicketStatus.AVAILABLE;
    const button = h(
      "button",
      {
        class: `seat ${free ? "available" : "taken"}${picked.has(ticket.id) ? " picked" : ""}`,
        title: `${ticket.section} · row ${ticket.row} · seat ${ticket.seat} · ${money(ticket.price)}`,
        disabled: !free,
        "data-testid": free ? "seat-available" : "seat-taken",
        "data-ticket": ticket.id,
      },
      ticket.seat,
    );
    button.addEventListener("click", () => {
      if (picked.has(ticket.id)) {
        picked.delete(ticket.id);
      } else if (picked.size < maxTickets) {
        picked.set(ticket.id, ticket);
      }
      button.classList.toggle("picked", picked.has(ticket.id));
      updateSelection();
    });
    return button;
  }

  function updateSelection(): void {
    const tickets = [...picked.values()];
    const total = tickets.reduce((sum, t) => sum + Number(t.price?.amountMinor ?? 0), 0);
    const currency = tickets[0]?.price?.currencyCode ?? event.currencyCode;
    const price = money({ currencyCode: currency, amountMinor: BigInt(total) });
    pickedLine.textContent = tickets.length
      ? `${tickets.length} seat${tickets.length === 1 ? "" : "s"} · ${price}`
      : `Pick up to ${maxTickets} seats`;
    reserve.disabled = tickets.length === 0;
    reserve.textContent = queued && !state.admission(eventId) ? "Reserve (after the queue)" : "Reserve";
  }

  async function hold(): Promise<void> {
    notice.textContent = "";
    if (!session.current()) {
      notice.textContent = "Please sign in to reserve seats.";
      return;
    }
    const pass = state.admission(eventId);
    if (queued && !pass) {
      notice.textContent = "This sale uses a waiting queue: join it and wait for your turn first.";
      return;
    }
    const [first, ...rest] = [...picked.keys()];
    reserve.disabled = true;
    try {
      const reservation = await booking.reserveTicket({
        ticketId: first,
        ticketIds: rest,
        requestId: crypto.randomUUID(),
        admissionToken: pass?.token ?? "",
      });
      const labels: Record<string, string> = {};
      for (const [id, t] of picked) labels[id] = `${t.section} · row ${t.row} · seat ${t.seat}`;
      state.setHold({ reservation, eventName: event.name, labels });
      window.location.hash = "#/checkout";
    } catch (err) {
      notice.textContent = problem(err).text;
      reserve.disabled = false;
    }
  }

  // -- the waiting queue ---------------------------------------------------------------------

  async function queueState(): Promise<void> {
    if (!session.current()) {
      replace(
        queuePanel,
        h("h2", {}, "Waiting room"),
        h("p", {}, "This is a hot sale: buyers pass a waiting queue. Sign in to join it."),
      );
      return;
    }
    try {
      const entry = await queue.getQueuePosition({ eventId });
      showEntry(entry);
      if (isLive(entry.state)) void watch();
    } catch (err) {
      const found = problem(err);
      if (found.reason !== "NOT_IN_QUEUE" && found.code !== Code.NotFound) {
        replace(queuePanel, h("h2", {}, "Waiting room"), h("p", { class: "error" }, found.text));
        return;
      }
      replace(
        queuePanel,
        h("h2", {}, "Waiting room"),
        h("p", {}, "This is a hot sale: join the queue and we will let you in when it is your turn."),
        h("button", { class: "primary", onclick: () => void join(), "data-testid": "join-queue" }, "Join the queue"),
      );
    }
  }

  async function join(): Promise<void> {
    try {
      showEntry(await queue.joinQueue({ eventId }));
      void watch();
    } catch (err) {
      queuePanel.append(h("p", { class: "error" }, problem(err).text));
    }
  }

  async function watch(): Promise<void> {
    try {
      for await (const entry of queue.watchQueue({ eventId }, { signal: stop.signal })) {
        showEntry(entry);
      }
    } catch (err) {
      if (isAborted(err) || stop.signal.aborted) return;
      queuePanel.append(
        h("p", { class: "error" }, `Lost touch with the queue: ${problem(err).text} `),
        h("button", { onclick: () => void queueState() }, "Reconnect"),
      );
    }
  }

  async function leave(): Promise<void> {
    try {
      showEntry(await queue.leaveQueue({ eventId }));
    } catch (err) {
      queuePanel.append(h("p", { class: "error" }, problem(err).text));
    }
  }

  function showEntry(entry: QueueEntry): void {
    const title = h("h2", {}, "Waiting room");
    const leaveButton = h("button", { onclick: () => void leave() }, "Leave the queue");
    const stateName = QueueEntryState[entry.state];
    queuePanel.dataset.state = stateName;
    switch (entry.state) {
      case QueueEntryState.PRE_QUEUE:
        replace(
          queuePanel,
          title,
          h("p", { "data-testid": "queue-status" }, "You are in the waiting room."),
          h(
            "p",
            {},
            `The sale opens ${when(entry.openTime)}; places in line are drawn at random then. `,
            `${entry.queueLength} waiting so far.`,
          ),
          leaveButton,
        );
        break;
      case QueueEntryState.WAITING: {
        const position = Number(entry.position);
        const length = Math.max(Number(entry.queueLength), position, 1);
        replace(
          queuePanel,
          title,
          h(
            "p",
            { class: "position", "data-testid": "queue-status" },
            "You are number ",
            h("strong", { "data-testid": "queue-position" }, position),
            ` in line (of ${length}).`,
          ),
          h("progress", { max: length, value: length - position + 1 }),
          h("p", { class: "muted" }, `Estimated wait: ${wait(entry.estimatedWait)}. Keep this page open.`),
          leaveButton,
        );
        break;
      }
      case QueueEntryState.ADMITTED: {
        const admission = entry.admission;
        if (admission?.token && admission.expireTime) {
          state.admit(eventId, { token: admission.token, expires: timestampDate(admission.expireTime) });
        }
        replace(
          queuePanel,
          title,
          h(
            "p",
            { class: "ok", "data-testid": "queue-status" },
            "It is your turn: pick your seats and reserve",
            admission?.expireTime ? ` before ${when(admission.expireTime)}.` : ".",
          ),
        );
        updateSelection();
        break;
      }
      default:
        replace(
          queuePanel,
          title,
          h(
            "p",
            { "data-testid": "queue-status" },
            entry.state === QueueEntryState.EXPIRED
              ? "Your place or admission ran out. "
              : "You left the queue. ",
          ),
          h("button", { class: "primary", onclick: () => void join(), "data-testid": "join-queue" }, "Join again"),
        );
    }
  }
}

function isLive(value: QueueEntryState): boolean {
  return value === QueueEntryState.PRE_QUEUE || value === QueueEntryState.WAITING;
}
