// Browser journeys through the web client, in Debian's headless Chromium driven by
// playwright-core (no browser is ever downloaded). Run by tests/e2e/test_browser.py:
//
//   node tests/e2e/browser.mjs JOURNEY --gateway HOST:PORT --out DIR [--params JSON]
//
// Prints one JSON line with what the journey saw; exits 1 (with the reason and a screenshot
// of the page in DIR) when a step fails.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const CHROMIUM = process.env.TICKETING_CHROMIUM ?? "/usr/bin/chromium";
const STEP_TIMEOUT = 30_000;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    gateway: { type: "string" },
    out: { type: "string" },
    params: { type: "string", default: "{}" },
  },
});
const [journey] = positionals;
const params = JSON.parse(values.params);
const base = `http://${values.gateway}`;

// -- the journeys ------------------------------------------------------------------------------

const journeys = {
  // An event page shows the event and its seat list, section by section.
  async event_and_seats(page) {
    await page.goto(`${base}/#/event/${params.eventId}`);
    const name = await text(page.getByTestId("event-name"));
    await page.getByTestId("seat-available").first().waitFor();
    const seats = await page.getByTestId("seat-available").count();
    const sections = await page.getByRole("tab").count();
    await page.getByRole("tab").nth(1).click();
    await page.getByTestId("seat-available").first().waitFor();
    return { name, seats, sections, availability: await text(page.getByTestId("availability")) };
  },

  // Sign in, pick a seat, reserve it, pay with the test card: a confirmed booking.
  async reserve_and_confirm(page) {
    await signIn(page, params.user);
    await page.goto(`${base}/#/event/${params.eventId}`);
    const seat = page.getByTestId("seat-available").first();
    const ticketId = await seat.getAttribute("data-ticket");
    await seat.click();
    const selection = await text(page.getByTestId("selection"));
    await page.getByTestId("reserve").click();
    await page.getByTestId("checkout").waitFor();
    const total = await text(page.getByTestId("total"));
    const countdown = await text(page.getByTestId("hold-countdown"));
    await page.getByTestId("card").selectOption("pm_card_visa");
    await page.getByTestId("pay").click();
    const confirmation = page.getByTestId("confirmation");
    await confirmation.waitFor();
    const heading = await text(confirmation.getByRole("heading"));
    const bookingId = await text(page.getByTestId("booking-id"));
    const screenshot = join(values.out, "booking-confirmed.png");
    await page.screenshot({ path: screenshot, fullPage: true });
    return { ticketId, selection, total, countdown, heading, bookingId, screenshot };
  },

  // Search with a term and a type filter, then open a result.
  async search_with_filters(page) {
    await page.goto(`${base}/#/`);
    await page.getByTestId("search-summary").filter({ hasText: "found" }).waitFor();
    await page.getByTestId("search-term").fill(params.term);
    await page.getByTestId("search-type").selectOption(params.type);
    if (params.location) await page.getByTestId("search-location").fill(params.location);
    await page.getByTestId("search-submit").click();
    await page.waitForURL(/term=/);
    const summary = await text(page.getByTestId("search-summary").filter({ hasText: /found|No events/ }));
    const results = await page.getByTestId("result").allInnerTexts();
    await page.getByTestId("result").getByRole("link", { name: params.open }).click();
    const opened = await text(page.getByTestId("event-name"));
    return { summary, results, opened, url: page.url() };
  },

  // A hot sale before it opens: joining puts the buyer in the waiting room.
  async pre_queue(page) {
    await signIn(page, params.user);
    await page.goto(`${base}/#/event/${params.eventId}`);
    await page.getByTestId("join-queue").click();
    const status = page.getByTestId("queue-status").filter({ hasText: "waiting room" });
    return { status: await text(status) };
  },

  // A hot sale that is open: join, watch the place in line move live, get in, buy.
  async queue_then_buy(page) {
    await signIn(page, params.user);
    await page.goto(`${base}/#/event/${params.eventId}`);
    await page.getByTestId("join-queue").click();
    // Record every place the page shows while the queue moves.
    await page.evaluate(() => {
      window.__positions = [];
      const record = () => {
        const shown = document.querySelector('[data-testid="queue-position"]');
        const value = shown ? Number(shown.textContent) : null;
        const seen = window.__positions;
        if (value !== null && seen[seen.length - 1] !== value) seen.push(value);
      };
      record();
      new MutationObserver(record).observe(document.body, { subtree: true, childList: true });
    });
    const admitted = page.getByTestId("queue-status").filter({ hasText: "your turn" });
    await admitted.waitFor({ timeout: params.admitWithinMs ?? 60_000 });
    const admittedText = await text(admitted);
    const positions = await page.evaluate(() => window.__positions);
    await page.getByTestId("seat-available").first().click();
    await page.getByTestId("reserve").click();
    await page.getByTestId("checkout").waitFor();
    await page.getByTestId("pay").click();
    const heading = await text(page.getByTestId("confirmation").getByRole("heading"));
    return { positions, admitted: admittedText, heading };
  },

  // An operator (a pasted operator token) opens an event's live sale dashboard while a scripted
  // sale runs (reserves in the background, from the test): the figures and charts move without
  // a reload. Then, on a queue-enabled event's dashboard, pauses admission and sets the rate.
  async operator_dashboard(page) {
    await pasteToken(page, params.token);
    // From the event's page, whose link to the dashboard only operators see.
    await page.goto(`${base}/#/event/${params.eventId}`);
    await page.getByTestId("open-dashboard").click();
    await page.getByTestId("dashboard").waitFor();
    await page.evaluate(() => (window.__sameDocument = true));
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="dashboard"]').dataset.refreshes) >= 1);
    const first = await dashboardState(page);
    await page.waitForFunction(
      (before) => {
        const taken = Number(document.querySelector('[data-testid="figure-holds-taken"]').dataset.value);
        const holds = document.querySelector('[data-testid="chart-holds"]').dataset;
        const tickets = JSON.parse(document.querySelector('[data-testid="chart-tickets"]').dataset.values ?? "{}");
        const refreshes = Number(document.querySelector('[data-testid="dashboard"]').dataset.refreshes);
        return (
          refreshes >= before.refreshes + 2 &&
          taken > before.holdsTaken &&
          Number(holds.points) >= before.holds.points + 2 &&
          JSON.parse(holds.values ?? "{}").taken > 0 &&
          tickets.held > (before.tickets.values.held ?? 0)
        );
      },
      first,
      { timeout: params.moveWithinMs ?? 60_000, polling: 250 },
    );
    const moved = await dashboardState(page);
    const sameDocument = await page.evaluate(() => window.__sameDocument === true);
    const dashboardShot = join(values.out, "operator-dashboard.png");
    await page.screenshot({ path: dashboardShot, fullPage: true });

    await page.goto(`${base}/#/operator/event/${params.queueEventId}`);
    await page.getByTestId("queue-controls-state").filter({ hasText: "Admitting" }).waitFor();
    await page.getByTestId("control-pause").click();
    const paused = await text(page.getByTestId("queue-controls-state").filter({ hasText: "Paused" }));
    await page.getByTestId("control-rate").fill(String(params.rate));
    await page.getByTestId("control-apply").click();
    await page.waitForFunction(
      (rate) => {
        const input = document.querySelector('[data-testid="control-rate"]');
        return input && document.activeElement !== input && input.value === String(rate);
      },
      params.rate,
    );
    // Still shown after the next refreshes (what the queue service keeps, not what was typed).
    const refreshes = await page.evaluate(() => Number(document.querySelector('[data-testid="dashboard"]').dataset.refreshes));
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid="dashboard"]').dataset.refreshes) >= n + 2,
      refreshes,
    );
    const rateShown = await page.getByTestId("control-rate").inputValue();
    return { first, moved, sameDocument, paused, rateShown, screenshot: dashboardShot };
  },

  // A plain user (the development sign-in) opens a dashboard: the gateway refuses the queries
  // with 403 and the page says so.
  async dashboard_refused(page) {
    await signIn(page, params.user);
    const refused = page.waitForResponse((r) => r.url().includes("/operator/metrics/api/v1/"));
    await page.goto(`${base}/#/operator/event/${params.eventId}`);
    const status = (await refused).status();
    const message = await text(page.getByTestId("dashboard-error").filter({ hasText: "403" }));
    return { status, message };
  },
};

// -- helpers -----------------------------------------------------------------------------------

// What the dashboard shows: its refresh count, the holds-taken figure, and each chart's data.
async function dashboardState(page) {
  return page.evaluate(() => {
    const chart = (id) => {
      const el = document.querySelector(`[data-testid="chart-${id}"]`);
      return {
        points: Number(el.dataset.points),
        last: Number(el.dataset.last),
        values: JSON.parse(el.dataset.values ?? "{}"),
        series: el.dataset.series ?? "",
        canvases: el.querySelectorAll("canvas").length,
      };
    };
    return {
      at: Date.now(),
      refreshes: Number(document.querySelector('[data-testid="dashboard"]').dataset.refreshes),
      holdsTaken: Number(document.querySelector('[data-testid="figure-holds-taken"]').dataset.value),
      figuresScope: document.querySelector('[data-testid="figures-scope"]').dataset.scope,
      error: document.querySelector('[data-testid="dashboard-error"]').textContent,
      charts: Object.fromEntries(
        ["tickets", "waiting", "admitted", "holds", "latency", "cdc-lag"].map((id) => [id, chart(id)]),
      ),
      holds: chart("holds"),
      tickets: chart("tickets"),
    };
  });
}

async function pasteToken(page, token) {
  await page.goto(`${base}/#/`);
  await page.locator("details.paste summary").click();
  await page.getByTestId("signin-token").fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.getByTestId("signed-in").waitFor();
}

async function text(locator) {
  await locator.first().waitFor({ state: "visible" });
  return (await locator.first().innerText()).trim();
}

async function signIn(page, user) {
  await page.goto(`${base}/#/`);
  await page.getByTestId("signin-user").fill(user);
  await page.getByTestId("signin").click();
  await page.getByTestId("signed-in").waitFor();
}

async function main() {
  if (!journeys[journey]) throw new Error(`no journey ${journey}: ${Object.keys(journeys)}`);
  const profile = await mkdtemp(join(tmpdir(), "ticketing-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  const console_errors = [];
  page.on("console", (message) => {
    if (message.type() === "error") console_errors.push(message.text());
  });
  page.on("pageerror", (error) => console_errors.push(String(error)));
  try {
    const seen = await journeys[journey](page);
    process.stdout.write(`${JSON.stringify({ ok: true, journey, ...seen, console_errors })}\n`);
  } catch (error) {
    const screenshot = join(values.out, `${journey}-failed.png`);
    await page.screenshot({ path: screenshot, fullPage: true }).catch(() => undefined);
    const body = await page.locator("body").innerText().catch(() => "");
    process.stdout.write(
      `${JSON.stringify({ ok: false, journey, error: String(error), screenshot, body, console_errors })}\n`,
    );
    process.exitCode = 1;
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
}

await main();
