// One event: what, where and when, its seat map (drawn, greyed live from WatchAvailability),
// a seat list per section for the keyboard and screen readers, "best available", and (for a
// hot sale) the waiting queue, watched live, that admits the buyer before they may reserve.

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
import {
  SeatState,
  applyChange,
  applyListing,
  applyRuns,
  geometryOf,
  seatLabel,
  tierColour,
  type Geometry,
  type SectionGeometry,
} from "../seatmap";
import { SeatMapView, type Hit } from "../seatmap_view";
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
  const pickedLine = h("span", { "data-testid": "selection", "aria-live": "polite" }, "Pick up to ", maxTickets, " seats");
  const queuePanel = h("section", { class: "queue", "data-testid": "queue-panel" });
  const seatMap = event.venue?.seatMap;
  const sections = seatMap?.sections ?? [];

  // The drawing, its seat states (live from WatchAvailability) and what was listed of them.
  const geometry = geometryOf(seatMap);
  const placeOf = new Map<string, { section: SectionGeometry; at: number }>();
  const buttons = new Map<string, HTMLButtonElement>();
  const listings = new Map<string, Promise<Ticket[]>>();
  const inFlight = new Map<SectionGeometry, Set<number>>();
  const live = h("p", { class: "muted live", "data-testid": "live-status", "data-state": "connecting" }, "Connecting to live availability…");
  let reconnects = 0;
  let breakStream: () => void = () => undefined;
  let currentSection = "";
  const mapView = geometry
    ? new SeatMapView(
        geometry,
        (section, at) => {
          const ticket = section.tickets[at];
          return ticket !== undefined && picked.has(ticket.id);
        },
        (hit) => void pickOnMap(hit),
        (hit) => describe(hit.section, hit.at),
      )
    : null;
  if (mapView && geometry) exposeForTests(mapView, geometry);

  const best = bestAvailableForm();

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
      best,
      mapView && [mapView.element, legend(), live],
      tabs,
      seats,
      h("div", { class: "selection" }, pickedLine, reserve),
      notice,
    ),
  );

  if (sections.length > MAX_TABS) {
    // A stadium has dozens of sections: a list to pick from rather than a wall of tabs.
    const pick = h(
      "select",
      { "aria-label": "Section", "data-testid": "section-select" },
      sections.map((s) => h("option", { value: s.name }, `${s.name} (${s.priceTier})`)),
    );
    pick.addEventListener("change", () => {
      const chosen = sections.find((s) => s.name === pick.value);
      if (chosen) void showSection(chosen, true);
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
          onclick: () => void showSection(section, true),
          "aria-selected": index === 0 ? "true" : "false",
        },
        section.name,
        h("small", {}, section.priceTier),
      ),
    );
  });
  if (geometry) void watchSeats();
  if (sections[0]) await showSection(sections[0], false);
  if (queued) void queueState();
  return () => stop.abort();

  // -- the seat list: every seat of one section, the keyboard's and screen reader's map -----

  async function showSection(section: Section, zoom: boolean): Promise<void> {
    currentSection = section.name;
    for (const tab of tabs.querySelectorAll<HTMLButtonElement>("button")) {
      tab.setAttribute("aria-selected", String(tab.dataset.section === section.name));
    }
    const select = tabs.querySelector<HTMLSelectElement>("select");
    if (select) select.value = section.name;
    const drawn = geometry?.byName.get(section.name);
    if (zoom && drawn && mapView) mapView.show(drawn);
    replace(seats, h("p", { class: "muted" }, "Loading seats…"));
    try {
      const found = await ticketsOf(section.name);
      if (currentSection !== section.name) return;
      const rows = new Map<string, Ticket[]>();
      for (const ticket of found) {
        rows.set(ticket.row, [...(rows.get(ticket.row) ?? []), ticket]);
      }
      if (rows.size === 0) {
        replace(seats, h("p", { class: "muted" }, "No tickets in this section."));
        return;
      }
      const byLabel = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true });
      buttons.clear();
      const grid = h(
        "div",
        { role: "grid", class: "seat-grid", "aria-label": `Seats in ${section.name}` },
        [...rows]
          .sort(([a], [b]) => byLabel(a, b))
          .map(([row, tickets]) =>
            h(
              "div",
              { class: "row", role: "row" },
              h("span", { class: "row-label", role: "rowheader" }, row || "Standing"),
              tickets.sort((a, b) => byLabel(a.seat, b.seat)).map((t) => h("span", { role: "gridcell" }, seat(t))),
            ),
          ),
      );
      grid.addEventListener("keydown", (e) => moveFocus(grid, e));
      const first = grid.querySelector<HTMLButtonElement>('button[data-testid="seat-available"]') ?? grid.querySelector("button");
      if (first) first.tabIndex = 0;
      replace(
        seats,
        grid,
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
    const button = h(
      "button",
      {
        type: "button",
        tabindex: -1,
        "data-ticket": ticket.id,
        "aria-label": labelOf(ticket),
        title: `${labelOf(ticket, false)} · ${money(ticket.price)}`,
      },
      ticket.seat || String((placeOf.get(ticket.id)?.at ?? 0) + 1),
    );
    buttons.set(ticket.id, button);
    paint(button, ticket);
    button.addEventListener("click", () => toggle(ticket));
    button.addEventListener("focus", () => {
      const place = placeOf.get(ticket.id);
      if (place) mapView?.setFocus(place);
      for (const other of button.closest('[role="grid"]')?.querySelectorAll<HTMLButtonElement>("button") ?? []) {
        other.tabIndex = other === button ? 0 : -1;
      }
    });
    return button;
  }

  function paint(button: HTMLButtonElement, ticket: Ticket): void {
    const free = ticket.status === TicketStatus.AVAILABLE;
    const mine = picked.has(ticket.id);
    button.className = `seat ${free || mine ? "available" : "taken"}${mine ? " picked" : ""}`;
    button.dataset.testid = free ? "seat-available" : "seat-taken";
    button.dataset.state = free ? "available" : "taken";
    button.setAttribute("aria-pressed", String(mine));
    if (free) button.removeAttribute("aria-disabled");
    else button.setAttribute("aria-disabled", "true");
  }

  // Arrow keys move along a row and between rows, Home and End to a row's ends.
  function moveFocus(grid: HTMLElement, e: KeyboardEvent): void {
    const rows = [...grid.querySelectorAll<HTMLElement>('[role="row"]')].map((r) => [...r.querySelectorAll("button")]);
    const current = document.activeElement;
    const r = rows.findIndex((row) => row.includes(current as HTMLButtonElement));
    if (r < 0) return;
    const c = rows[r].indexOf(current as HTMLButtonElement);
    let next: HTMLButtonElement | undefined;
    if (e.key === "ArrowRight") next = rows[r][c + 1];
    else if (e.key === "ArrowLeft") next = rows[r][c - 1];
    else if (e.key === "ArrowDown") next = rows[r + 1]?.[Math.min(c, rows[r + 1].length - 1)];
    else if (e.key === "ArrowUp") next = rows[r - 1]?.[Math.min(c, rows[r - 1].length - 1)];
    else if (e.key === "Home") next = rows[r][0];
    else if (e.key === "End") next = rows[r][rows[r].length - 1];
    else return;
    e.preventDefault();
    next?.focus();
  }

  // Select or drop a seat; a seat someone else holds or bought is refused, and said so.
  function toggle(ticket: Ticket): void {
    notice.textContent = "";
    if (picked.has(ticket.id)) {
      picked.delete(ticket.id);
    } else if (ticket.status !== TicketStatus.AVAILABLE) {
      notice.textContent = `${labelOf(ticket, false)} is held or sold: pick another seat.`;
      return;
    } else if (picked.size >= maxTickets) {
      notice.textContent = `You can pick up to ${maxTickets} seats.`;
      return;
    } else {
      picked.set(ticket.id, ticket);
    }
    const button = buttons.get(ticket.id);
    if (button) paint(button, ticket);
    mapView?.redraw();
    updateSelection();
  }

  function labelOf(ticket: Ticket, withPrice = true): string {
    const price = withPrice ? money(ticket.price) : "";
    const place = placeOf.get(ticket.id);
    if (place) return seatLabel(place.section, place.at, price);
    const where = ticket.row ? `${ticket.section}, row ${ticket.row}, seat ${ticket.seat}` : `${ticket.section}, standing place ${ticket.seat}`;
    return price ? `${where}, ${price}` : where;
  }

  function describe(section: SectionGeometry, at: number): string {
    if (at < 0) {
      const free = section.total ? `${section.available} of ${section.total} available` : "not on sale";
      return section.standing
        ? `${section.name}: standing, ${section.standing} places (${free})`
        : `${section.name} (${section.tier}): ${free}`;
    }
    const ticket = section.tickets[at];
    const state = section.state[at];
    const what = state === SeatState.AVAILABLE ? "" : state === SeatState.NONE ? " (not on sale)" : " (held or sold)";
    return `${seatLabel(section, at, ticket ? money(ticket.price) : "")}${what}`;
  }

  // -- tickets and live availability --------------------------------------------------------

  // A section's tickets (all pages), kept for the page; on the map, they say which seats are
  // on sale, their ids and prices.
  function ticketsOf(name: string, fresh = false): Promise<Ticket[]> {
    if (fresh) listings.delete(name);
    let listing = listings.get(name);
    if (!listing) {
      listing = listAll(name);
      listings.set(name, listing);
      listing.catch(() => listings.delete(name));
    }
    return listing;
  }

  async function listAll(name: string): Promise<Ticket[]> {
    const drawn = geometry?.byName.get(name);
    const fresher = new Set<number>();
    if (drawn) inFlight.set(drawn, fresher);
    try {
      const all: Ticket[] = [];
      let pageToken = "";
      do {
        const page = await catalog.listTickets({ eventId, section: name, pageSize: 5000, pageToken }, { signal: stop.signal });
        all.push(...page.tickets);
        pageToken = page.nextPageToken;
      } while (pageToken);
      if (drawn) {
        applyListing(drawn, all, fresher);
        for (const [id, at] of drawn.byTicket) placeOf.set(id, { section: drawn, at });
        mapView?.redraw();
        return drawn.tickets.filter((t): t is Ticket => t !== undefined);
      }
      return all;
    } finally {
      if (drawn) inFlight.delete(drawn);
    }
  }

  async function watchSeats(): Promise<void> {
    let delay = 500;
    while (!stop.signal.aborted) {
      const attempt = new AbortController();
      const cut = () => attempt.abort();
      stop.signal.addEventListener("abort", cut);
      breakStream = cut;
      try {
        for await (const update of catalog.watchAvailability({ eventId }, { signal: attempt.signal })) {
          if (update.snapshot) {
            for (const s of update.snapshot.sections) {
              const drawn = geometry?.byName.get(s.section);
              // Seats the snapshot cannot place (a partly ticketed section not listed yet, or
              // standing places) are listed; a standing section afresh at every snapshot.
              if (drawn && !applyRuns(drawn, s.runs) && s.runs.length) {
                void ticketsOf(s.section, drawn.standing > 0).then(() => mapView?.redraw(), () => undefined);
              }
            }
          }
          if (live.dataset.state !== "live") {
            live.dataset.state = "live";
            live.textContent = "Live: seats grey out as others take them.";
            delay = 500;
          }
          for (const change of update.changes) seatChanged(change.ticketId, change.section, change.row, change.seat, change.status);
          live.dataset.updates = String(Number(live.dataset.updates ?? 0) + 1);
          mapView?.redraw();
        }
      } catch (err) {
        if (stop.signal.aborted) return;
        if (!isAborted(err)) live.title = problem(err).text;
      } finally {
        stop.signal.removeEventListener("abort", cut);
      }
      if (stop.signal.aborted) return;
      // The stream broke (or the server ended it): the next one starts with a fresh snapshot.
      reconnects += 1;
      live.dataset.state = "reconnecting";
      live.dataset.reconnects = String(reconnects);
      live.textContent = "Live availability lost: reconnecting…";
      await new Promise((done) => setTimeout(done, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }

  function seatChanged(ticketId: string, sectionName: string, row: string, seatName: string, status: TicketStatus): void {
    const drawn = geometry?.byName.get(sectionName);
    if (drawn) {
      const at = applyChange(drawn, ticketId, row, seatName, status);
      if (at >= 0) inFlight.get(drawn)?.add(at);
    }
    const button = buttons.get(ticketId);
    const ticket = picked.get(ticketId) ?? (drawn && placeOf.get(ticketId) ? drawn.tickets[placeOf.get(ticketId)!.at] : undefined);
    if (ticket) ticket.status = status;
    if (picked.has(ticketId) && status !== TicketStatus.AVAILABLE) {
      const taken = picked.get(ticketId)!;
      picked.delete(ticketId);
      notice.textContent = `${labelOf(taken, false)} was just taken by someone else.`;
      updateSelection();
    }
    if (button && ticket) paint(button, ticket);
    else if (button) {
      button.dataset.testid = status === TicketStatus.AVAILABLE ? "seat-available" : "seat-taken";
      button.dataset.state = status === TicketStatus.AVAILABLE ? "available" : "taken";
    }
  }

  async function pickOnMap(hit: Hit): Promise<void> {
    const { section, at } = hit;
    if (at < 0) {
      if (section.standing) {
        best.querySelector<HTMLSelectElement>('[data-testid="best-section"]')!.value = section.name;
        best.querySelector<HTMLInputElement>('[data-testid="best-quantity"]')!.focus();
        notice.textContent = "";
        pickedLine.textContent = `${section.name} is standing: choose how many places, then "Find best seats".`;
      } else {
        const chosen = sections.find((s) => s.name === section.name);
        if (chosen) void showSection(chosen, false);
      }
      return;
    }
    if (!section.tickets[at] && section.total > 0) {
      try {
        await ticketsOf(section.name);
      } catch (err) {
        notice.textContent = problem(err).text;
        return;
      }
    }
    const ticket = section.tickets[at];
    if (!ticket) {
      notice.textContent = `${seatLabel(section, at, "")} is not on sale for this event.`;
      return;
    }
    toggle(ticket);
  }

  function legend(): HTMLElement {
    if (!geometry) return h("p", {});
    return h(
      "p",
      { class: "map-legend muted", "data-testid": "map-legend" },
      geometry.tiers.flatMap((tier) => [swatch(tierColour(geometry, tier)), ` ${tier} `]),
      swatch("#a3a8b3"),
      " held or sold ",
      swatch("#111827"),
      " yours · scroll or use + and − to zoom, drag to move",
    );
  }

  // Colours are set through the CSSOM: the page's CSP refuses inline style attributes.
  function swatch(colour: string): HTMLElement {
    const box = h("span", { class: "swatch" }, "");
    box.style.backgroundColor = colour;
    return box;
  }

  // -- best available ---------------------------------------------------------------------

  function bestAvailableForm(): HTMLFormElement {
    const tiers = [...new Set(sections.map((s) => s.priceTier))];
    const quantity = h("input", { type: "number", min: 1, max: maxTickets, value: 2, required: true, "data-testid": "best-quantity" });
    const tier = h("select", { "data-testid": "best-tier" }, h("option", { value: "" }, "Any price"), tiers.map((t) => h("option", { value: t }, t)));
    const section = h("select", { "data-testid": "best-section" }, h("option", { value: "" }, "Best section"), sections.map((s) => h("option", { value: s.name }, s.name)));
    const seatedOnly = h("input", { type: "checkbox", "data-testid": "best-seated-only" });
    const hasStanding = sections.some((s) => s.standingCapacity > 0);
    const answer = h("p", { class: "error", role: "alert", "data-testid": "best-error" });
    const form = h(
      "form",
      { class: "best", "data-testid": "best-form", "aria-label": "Best available seats" },
      h("label", {}, "Seats ", quantity),
      h("label", {}, "Price ", tier),
      h("label", {}, "Section ", section),
      hasStanding && h("label", { class: "check" }, seatedOnly, " Seats only (no standing)"),
      h("button", { class: "primary", type: "submit", "data-testid": "best-available" }, "Find best seats"),
      answer,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void reserveBest(Number(quantity.value), tier.value, section.value, seatedOnly.checked, answer, form);
    });
    return form;
  }

  async function reserveBest(
    quantity: number,
    priceTier: string,
    section: string,
    seatedOnly: boolean,
    answer: HTMLElement,
    form: HTMLFormElement,
  ): Promise<void> {
    answer.textContent = "";
    if (!session.current()) {
      answer.textContent = "Please sign in to reserve seats.";
      return;
    }
    const pass = state.admission(eventId);
    if (queued && !pass) {
      answer.textContent = "This sale uses a waiting queue: join it and wait for your turn first.";
      return;
    }
    const submit = form.querySelector("button")!;
    submit.disabled = true;
    try {
      const reservation = await booking.reserveBestAvailable({
        eventId,
        quantity,
        priceTier,
        section,
        seatedOnly,
        requestId: crypto.randomUUID(),
        admissionToken: pass?.token ?? "",
      });
      const labels: Record<string, string> = {};
      for (const id of reservation.ticketIds) {
        const place = placeOf.get(id);
        if (place) labels[id] = seatLabel(place.section, place.at, "").replaceAll(", ", " · ");
      }
      state.setHold({ reservation, eventName: event.name, labels });
      window.location.hash = "#/checkout";
    } catch (err) {
      const found = problem(err);
      if (found.reason === "NO_ADJACENT_SEATS") {
        const left = Number(found.metadata.seats_remaining ?? 0);
        answer.textContent =
          `No ${quantity} seats side by side are left${priceTier ? ` at ${priceTier} price` : ""}${section ? ` in ${section}` : ""}; ` +
          `${left} single seat${left === 1 ? "" : "s"} remain${left === 1 ? "s" : ""}. Try fewer seats, or pick seats on the map.`;
        answer.dataset.seatsRemaining = String(left);
      } else {
        answer.textContent = found.text;
      }
      answer.dataset.reason = found.reason;
      submit.disabled = false;
    }
  }

  // For the browser tests and for measuring: where a ticket's seat is drawn, its state, and
  // the draw times (window.ticketingSeatMap).
  function exposeForTests(view: SeatMapView, drawn: Geometry): void {
    (window as unknown as { ticketingSeatMap: unknown }).ticketingSeatMap = {
      seats: drawn.seatCount,
      sections: drawn.sections.length,
      timings: view.timings,
      draw: (allSeats: boolean) => view.draw(allSeats),
      zoomBy: (factor: number) => view.zoomBy(factor),
      show: (name: string) => {
        const s = drawn.byName.get(name);
        if (s) view.show(s);
      },
      point: (ticketId: string) => {
        const place = placeOf.get(ticketId);
        if (!place) return null;
        view.show(place.section);
        view.draw();
        return view.clientPoint(place.section, place.at);
      },
      state: (ticketId: string) => {
        const place = placeOf.get(ticketId);
        return place ? SeatState[place.section.state[place.at]] : null;
      },
      picked: () => [...picked.keys()],
      breakStream: () => breakStream(),
      reconnects: () => reconnects,
    };
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
