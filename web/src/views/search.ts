// Find events: a term (with suggestions as you type), a city, a type and a date.

import type { FacetCount, EventSummary } from "../../gen/ticketing/search/v1/search_pb";
import { problem, search } from "../api";
import { h, replace } from "../dom";
import { EVENT_TYPES, eventType, money, when } from "../format";
import type { Cleanup } from "../main";

const FILTERS = ["term", "location", "type", "date"] as const;

export async function renderSearch(root: HTMLElement, params: URLSearchParams): Promise<Cleanup> {
  const value = (name: (typeof FILTERS)[number]) => params.get(name) ?? "";
  const suggestions = h("datalist", { id: "suggestions" });
  const term = h("input", {
    name: "term",
    type: "search",
    placeholder: "Artist, event or venue",
    value: value("term"),
    list: "suggestions",
    autocomplete: "off",
    "data-testid": "search-term",
  });
  const location = h("input", {
    name: "location",
    placeholder: "City",
    value: value("location"),
    "data-testid": "search-location",
  });
  const type = h(
    "select",
    { name: "type", "data-testid": "search-type" },
    h("option", { value: "" }, "Any type"),
    EVENT_TYPES.map((name) =>
      h("option", { value: name, selected: name === value("type") }, cap(name)),
    ),
  );
  const date = h("input", {
    name: "date",
    type: "date",
    value: value("date"),
    "data-testid": "search-date",
  });
  const form = h(
    "form",
    { class: "filters", role: "search", onsubmit: submit },
    h("label", {}, "What", term),
    h("label", {}, "Where", location),
    h("label", {}, "Type", type),
    h("label", {}, "When", date),
    h("button", { type: "submit", class: "primary", "data-testid": "search-submit" }, "Search"),
    suggestions,
  );
  const summary = h("p", { class: "muted", "data-testid": "search-summary" }, "Searching…");
  const facets = h("div", { class: "facets" });
  const list = h("ol", { class: "results", "data-testid": "results" });
  const more = h("div", { class: "more" });
  replace(root, h("section", {}, h("h1", {}, "Find events"), form, summary, facets, list, more));

  function submit(event: Event): void {
    event.preventDefault();
    const next = new URLSearchParams();
    const fields = { term, location, type, date };
    for (const name of FILTERS) {
      const field = fields[name].value.trim();
      if (field) next.set(name, field);
    }
    window.location.hash = `#/?${next.toString()}`;
  }

  let typing: number | undefined;
  term.addEventListener("input", () => {
    window.clearTimeout(typing);
    typing = window.setTimeout(async () => {
      const prefix = term.value.trim();
      if (!prefix) return;
      try {
        const found = await search.suggestEvents({ prefix, pageSize: 8 });
        replace(suggestions, found.suggestions.map((s) => h("option", { value: s.text })));
      } catch {
        // Suggestions are a nicety: a failure leaves the list as it was.
      }
    }, 200);
  });

  const query = {
    term: value("term"),
    location: value("location"),
    type: value("type"),
    date: value("date"),
    pageSize: 20,
  };
  async function page(token: string): Promise<void> {
    try {
      const found = await search.searchEvents({ ...query, pageToken: token });
      if (!token) {
        const total = Number(found.totalSize);
        summary.textContent =
          total === 0 ? "No events match." : `${total} event${total === 1 ? "" : "s"} found`;
        replace(
          facets,
          chips("type", found.typeFacets, (v) => cap(v)),
          chips("location", found.cityFacets, (v) => v),
        );
      }
      list.append(...found.events.map(result));
      replace(
        more,
        found.nextPageToken &&
          h("button", { onclick: () => void page(found.nextPageToken) }, "More results"),
      );
    } catch (err) {
      summary.textContent = `Search is unavailable: ${problem(err).text}`;
      summary.className = "error";
    }
  }
  await page("");
  return () => window.clearTimeout(typing);

  function chips(name: string, counts: FacetCount[], label: (v: string) => string): HTMLElement {
    return h(
      "p",
      { class: "chips" },
      counts.slice(0, 8).map((facet) => {
        const next = new URLSearchParams(params);
        next.set(name, facet.value);
        return h(
          "a",
          { class: "chip", href: `#/?${next.toString()}` },
          `${label(facet.value)} (${facet.count})`,
        );
      }),
    );
  }
}

function result(event: EventSummary): HTMLElement {
  const price = event.soldOut ? "Sold out" : `from ${money(event.minAvailablePrice)}`;
  return h(
    "li",
    { class: "card", "data-testid": "result" },
    h("a", { href: `#/event/${event.eventId}`, class: "title" }, event.name),
    h("p", {}, when(event.startTime)),
    h("p", { class: "muted" }, `${event.venueName} · ${event.city}`),
    h(
      "p",
      {},
      h("span", { class: "badge" }, eventType(event.type)),
      " ",
      h("strong", {}, price),
      event.soldOut ? "" : h("span", { class: "muted" }, ` · ${event.availableTickets} available`),
    ),
  );
}

function cap(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
