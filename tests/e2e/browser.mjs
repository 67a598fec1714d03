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

  // -- the drawn seat map (issue 12) -----------------------------------------------------------

  // Each event's map drawn: a screenshot of the canvas per event, the draw times (the first
  // full draw, a zoom, every seat at once), then the screenshots' pixels compared in the page
  // (decoded from the PNG files): how much of each is not background, how much two differ.
  async seat_map_screenshots(page) {
    const maps = [];
    for (const { name, eventId } of params.events) {
      await page.goto("about:blank");
      await page.goto(`${base}/#/event/${eventId}`);
      const canvas = page.getByTestId("seat-map");
      await page.waitForFunction(() => document.querySelector('[data-testid="seat-map"]')?.dataset.ready === "true");
      await page.getByTestId("live-status").and(page.locator('[data-state="live"]')).waitFor();
      await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
      const path = join(values.out, `seat-map-${name}.png`);
      await canvas.screenshot({ path });
      const figures = await page.evaluate(async () => {
        const map = window.ticketingSeatMap;
        const first = Number(document.querySelector('[data-testid="seat-map"]').dataset.firstDrawMs);
        map.zoomBy(6);
        const zoom = map.draw(false);
        const all = [];
        for (let i = 0; i < 3; i++) all.push(map.draw(true));
        return { seats: map.seats, sections: map.sections, firstDrawMs: first, zoom, allSeats: all };
      });
      maps.push({ name, eventId, path, ...figures });
    }
    const pixels = await comparePngs(page, maps.map((m) => m.path));
    return { maps, pixels };
  },

  // Two buyers on one event. B watches; A picks two seats and reserves them: B's map and seat
  // list grey them out (the time from A's click to B's page is measured), and B's attempts to
  // pick them, on the map and in the list, are refused with a message. Then B's stream is cut:
  // the page reconnects, and a seat A holds afterwards greys out too.
  async two_buyers_live(pageA) {
    const { page: pageB } = await openBrowser();
    await signIn(pageA, params.userA);
    await signIn(pageB, params.userB);
    await pageB.goto(`${base}/#/event/${params.eventId}`);
    await pageB.getByTestId("live-status").and(pageB.locator('[data-state="live"]')).waitFor();
    await pageA.goto(`${base}/#/event/${params.eventId}`);
    await pageA.getByTestId("live-status").and(pageA.locator('[data-state="live"]')).waitFor();
    const free = pageA.getByTestId("seat-list").getByTestId("seat-available");
    const ids = [await free.nth(0).getAttribute("data-ticket"), await free.nth(1).getAttribute("data-ticket")];
    for (const id of ids) await pageA.locator(`[data-ticket="${id}"]`).click();
    await pageB.locator(`[data-ticket="${ids[1]}"]`).waitFor();
    const before = await pageB.evaluate((ids) => ids.map((id) => window.ticketingSeatMap.state(id)), ids);
    await watchGrey(pageB, ids);
    const clicked = Date.now();
    await pageA.getByTestId("reserve").click();
    await pageA.getByTestId("checkout").waitFor();
    const reserved = Date.now();
    const greyed = await pageB.waitForFunction(() => window.__greyed, undefined, { timeout: 10_000 }).then((h) => h.jsonValue());
    const after = await pageB.evaluate((ids) => ids.map((id) => window.ticketingSeatMap.state(id)), ids);
    // B tries to pick them: on the drawn map, then in the seat list.
    const point = await pageB.evaluate((id) => window.ticketingSeatMap.point(id), ids[0]);
    await pageB.mouse.click(point.x, point.y);
    const mapRefusal = await text(pageB.getByTestId("event-error"));
    await pageB.evaluate(() => (document.querySelector('[data-testid="event-error"]').textContent = ""));
    // (aria-disabled: still focusable, so a keyboard user hears why it cannot be had)
    await pageB.locator(`[data-ticket="${ids[1]}"]`).focus();
    await pageB.keyboard.press("Enter");
    const listRefusal = await text(pageB.getByTestId("event-error"));
    const pickedByB = await pageB.evaluate(() => window.ticketingSeatMap.picked());
    const listStates = await pageB.evaluate((ids) => ids.map((id) => document.querySelector(`[data-ticket="${id}"]`).dataset.state), ids);
    // The stream breaks; the page says so, reconnects, and keeps greying seats.
    await pageB.evaluate(() => window.ticketingSeatMap.breakStream());
    await pageB.waitForFunction(() => window.ticketingSeatMap.reconnects() >= 1);
    await pageB.getByTestId("live-status").and(pageB.locator('[data-state="live"]')).waitFor();
    await pageA.goto(`${base}/#/event/${params.eventId}`);
    const third = await pageA.getByTestId("seat-list").getByTestId("seat-available").first().getAttribute("data-ticket");
    await watchGrey(pageB, [third]);
    await pageA.locator(`[data-ticket="${third}"]`).click();
    const clickedAgain = Date.now();
    await pageA.getByTestId("reserve").click();
    await pageA.getByTestId("checkout").waitFor();
    const greyedAgain = await pageB.waitForFunction(() => window.__greyed, undefined, { timeout: 10_000 }).then((h) => h.jsonValue());
    return {
      ids,
      third,
      before,
      after,
      mapRefusal,
      listRefusal,
      pickedByB,
      listStates,
      clicked,
      reserved,
      greyed,
      clickedAgain,
      greyedAgain,
      reconnects: await pageB.evaluate(() => window.ticketingSeatMap.reconnects()),
    };
  },

  // Keyboard only: focus a seat in the seat list, move with the arrow keys, press Enter: the
  // seat is selected (the list, the map and the total say so); what a screen reader reads.
  async keyboard_select(page) {
    await page.goto(`${base}/#/event/${params.eventId}`);
    const first = page.getByTestId("seat-list").getByTestId("seat-available").first();
    await first.focus();
    const firstLabel = await page.evaluate(() => document.activeElement.getAttribute("aria-label"));
    await page.keyboard.press("ArrowRight");
    const focused = await page.evaluate(() => ({
      label: document.activeElement.getAttribute("aria-label"),
      ticket: document.activeElement.dataset.ticket,
      tabindex: document.activeElement.tabIndex,
    }));
    await page.keyboard.press("Enter");
    const pressed = await page.evaluate(() => document.activeElement.getAttribute("aria-pressed"));
    const selection = await text(page.getByTestId("selection"));
    const picked = await page.evaluate(() => window.ticketingSeatMap.picked());
    // The same seat found by its accessible name, as assistive technology sees it.
    const byName = await page.getByRole("button", { name: focused.label, exact: true }).count();
    await page.keyboard.press("ArrowDown");
    const below = await page.evaluate(() => document.activeElement.getAttribute("aria-label"));
    const tabStops = await page.getByTestId("seat-list").locator('button[tabindex="0"]').count();
    return { firstLabel, focused, pressed, selection, picked, byName, below, tabStops };
  },

  // "Best available" from the page: a party seated together, or the clear refusal when no
  // block that big is left.
  async best_available(page) {
    await signIn(page, params.user);
    await page.goto(`${base}/#/event/${params.eventId}`);
    await page.getByTestId("best-quantity").fill(String(params.quantity));
    await page.getByTestId("best-available").click();
    if (params.expectRefusal) {
      const refusal = page.getByTestId("best-error");
      const message = await text(refusal);
      return { message, reason: await refusal.getAttribute("data-reason"), remaining: await refusal.getAttribute("data-seats-remaining") };
    }
    await page.getByTestId("checkout").waitFor();
    return { tickets: await page.getByTestId("checkout").locator("li").allInnerTexts() };
  },

  // The benchmark of bench/seatmap_draw.py: one event's map drawn over and over in this page.
  // The first draw, frames of a zoom in (sections, then seats) and a pan, every seat of the
  // venue at once; and the raw building block in the same page: the same number of squares
  // filled on a canvas of the same size in one path, no map around them.
  async seat_map_bench(page) {
    await page.goto(`${base}/#/event/${params.eventId}`);
    await page.waitForFunction(() => document.querySelector('[data-testid="seat-map"]')?.dataset.ready === "true", undefined, { timeout: 120_000 });
    if (params.tickets) await page.getByTestId("live-status").and(page.locator('[data-state="live"]')).waitFor({ timeout: 120_000 });
    return page.evaluate((rounds) => {
      const map = window.ticketingSeatMap;
      const canvas = document.querySelector('[data-testid="seat-map"]');
      const firstDrawMs = Number(canvas.dataset.firstDrawMs);
      const zoom = [];
      for (let i = 0; i < 24; i++) {
        map.zoomBy(1.15);
        zoom.push(map.draw(false));
      }
      const allSeats = [];
      for (let i = 0; i < rounds; i++) allSeats.push(map.draw(true));
      const raw = document.createElement("canvas");
      raw.width = canvas.width;
      raw.height = canvas.height;
      document.body.append(raw);
      const ctx = raw.getContext("2d");
      const n = map.seats;
      const xs = new Float64Array(n).map(() => Math.random() * raw.width);
      const ys = new Float64Array(n).map(() => Math.random() * raw.height);
      const rawMs = [];
      for (let r = 0; r < rounds; r++) {
        const t0 = performance.now();
        ctx.clearRect(0, 0, raw.width, raw.height);
        ctx.beginPath();
        for (let i = 0; i < n; i++) ctx.rect(xs[i], ys[i], 2, 2);
        ctx.fillStyle = "#3157d5";
        ctx.fill();
        rawMs.push(performance.now() - t0);
      }
      raw.remove();
      return { seats: n, sections: map.sections, width: canvas.width, height: canvas.height, firstDrawMs, zoom, allSeats, rawMs };
    }, params.rounds ?? 20);
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

// Records (window.__greyed) when every given ticket shows taken on the map and in the list.
async function watchGrey(page, ids) {
  await page.evaluate((ids) => {
    window.__greyed = null;
    const check = () => {
      const done = ids.every(
        (id) =>
          window.ticketingSeatMap.state(id) !== "AVAILABLE" &&
          document.querySelector(`[data-ticket="${id}"]`)?.dataset.state === "taken",
      );
      if (done) window.__greyed = { at: Date.now(), states: ids.map((id) => window.ticketingSeatMap.state(id)) };
      else requestAnimationFrame(check);
    };
    check();
  }, ids);
}

// The PNG files decoded in the page: per image the share of pixels that are not the map's
// background, per pair the share of pixels that differ (any channel by more than 24).
async function comparePngs(page, paths) {
  const { readFile } = await import("node:fs/promises");
  const images = [];
  for (const path of paths) images.push((await readFile(path)).toString("base64"));
  await page.goto("about:blank");
  return page.evaluate(async (images) => {
    const decoded = [];
    for (const b64 of images) {
      const bitmap = await createImageBitmap(await (await fetch(`data:image/png;base64,${b64}`)).blob());
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = canvas.getContext("2d");
      ctx.drawImage(bitmap, 0, 0);
      decoded.push(ctx.getImageData(0, 0, bitmap.width, bitmap.height));
    }
    const background = [0xfb, 0xfb, 0xfd];
    const drawn = decoded.map((img) => {
      let n = 0;
      for (let i = 0; i < img.data.length; i += 4) {
        if (Math.abs(img.data[i] - background[0]) + Math.abs(img.data[i + 1] - background[1]) + Math.abs(img.data[i + 2] - background[2]) > 24) n++;
      }
      return { width: img.width, height: img.height, drawnShare: n / (img.width * img.height) };
    });
    const pairs = [];
    for (let a = 0; a < decoded.length; a++) {
      for (let b = a + 1; b < decoded.length; b++) {
        const x = decoded[a];
        const y = decoded[b];
        const w = Math.min(x.width, y.width);
        const hgt = Math.min(x.height, y.height);
        let differ = 0;
        for (let r = 0; r < hgt; r++) {
          for (let c = 0; c < w; c++) {
            const i = (r * x.width + c) * 4;
            const j = (r * y.width + c) * 4;
            if (Math.max(Math.abs(x.data[i] - y.data[j]), Math.abs(x.data[i + 1] - y.data[j + 1]), Math.abs(x.data[i + 2] - y.data[j + 2])) > 24) differ++;
          }
        }
        pairs.push({ a, b, differShare: differ / (w * hgt) });
      }
    }
    return { drawn, pairs };
  }, images);
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

// A fresh headless Chromium with its own profile (a second one is a second buyer).
async function openBrowser() {
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
  page.on("console", (message) => {
    if (message.type() === "error") console_errors.push(message.text());
  });
  page.on("pageerror", (error) => console_errors.push(String(error)));
  const close = async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  };
  opened.push(close);
  return { page, close };
}

const console_errors = [];
const opened = [];

async function main() {
  if (!journeys[journey]) throw new Error(`no journey ${journey}: ${Object.keys(journeys)}`);
  const { page } = await openBrowser();
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
    for (const close of opened) await close().catch(() => undefined);
  }
}

await main();
