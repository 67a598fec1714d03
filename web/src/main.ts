// The ticketing web client: a hash-routed single page over the gateway's gRPC-Web API.
//
//   #/?term=&location=&type=&date=   find events
//   #/event/<id>                     an event, its seats and (for a hot sale) its queue
//   #/checkout                       pay for the seats on hold
//   #/bookings                       my bookings
//   #/operator/event/<id>            operators: the event's live sale dashboard

import { h, replace } from "./dom";
import * as session from "./session";
import { renderBookings } from "./views/bookings";
import { renderCheckout } from "./views/checkout";
import { renderDashboard } from "./views/dashboard";
import { renderEvent } from "./views/event";
import { renderSearch } from "./views/search";

export type Cleanup = () => void;

const view = document.getElementById("view") as HTMLElement;
const sessionBox = document.getElementById("session") as HTMLElement;
const notice = document.getElementById("notice") as HTMLElement;
let cleanup: Cleanup = () => undefined;
let rendering = 0;

async function route(): Promise<void> {
  const turn = ++rendering;
  cleanup();
  cleanup = () => undefined;
  const [path, query = ""] = window.location.hash.replace(/^#/, "").split("?", 2);
  const params = new URLSearchParams(query);
  const event = /^\/event\/([^/]+)$/.exec(path);
  const dashboard = /^\/operator\/event\/([^/]+)$/.exec(path);
  view.dataset.view = event ? "event" : dashboard ? "dashboard" : path.replace(/\W/g, "") || "search";
  let done: Cleanup;
  if (event) done = await renderEvent(view, decodeURIComponent(event[1]));
  else if (dashboard) done = await renderDashboard(view, decodeURIComponent(dashboard[1]));
  else if (path === "/checkout") done = await renderCheckout(view);
  else if (path === "/bookings") done = await renderBookings(view);
  else done = await renderSearch(view, params);
  if (turn === rendering) cleanup = done;
  else done();
  view.dataset.ready = String(turn);
}

function renderSession(): void {
  const current = session.current();
  if (current) {
    replace(
      sessionBox,
      h("span", { "data-testid": "signed-in" }, "Signed in as ", h("strong", {}, current.user)),
      h("button", { class: "link", onclick: () => session.signOut() }, "Sign out"),
    );
    return;
  }
  const user = h("input", {
    name: "user",
    placeholder: "Your name",
    autocomplete: "username",
    required: true,
    "data-testid": "signin-user",
  });
  const pasted = h("input", { name: "token", placeholder: "eyJ…", "data-testid": "signin-token" });
  replace(
    sessionBox,
    h(
      "form",
      { class: "signin", onsubmit: (e: Event) => void signIn(e, user.value) },
      user,
      h("button", { type: "submit", "data-testid": "signin" }, "Sign in"),
      h("small", { class: "muted", title: "Local stack only: a token from its development key" }, "dev sign-in"),
    ),
    h(
      "details",
      { class: "paste" },
      h("summary", {}, "or paste a token"),
      h(
        "form",
        { onsubmit: (e: Event) => void pasteToken(e, pasted.value) },
        pasted,
        h("button", { type: "submit" }, "Use token"),
      ),
    ),
  );
}

async function signIn(event: Event, user: string): Promise<void> {
  event.preventDefault();
  try {
    await session.signInForDevelopment(user.trim());
  } catch (err) {
    show(String((err as Error).message));
  }
}

function pasteToken(event: Event, token: string): void {
  event.preventDefault();
  try {
    session.signInWithToken(token);
  } catch (err) {
    show(`That token cannot be used: ${(err as Error).message}`);
  }
}

function show(message: string): void {
  notice.textContent = message;
  notice.hidden = false;
  window.setTimeout(() => (notice.hidden = true), 6000);
}

session.onChange(() => {
  renderSession();
  void route();
});
window.addEventListener("hashchange", () => void route());
renderSession();
void route();
