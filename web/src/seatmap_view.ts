// The drawn seat map: one canvas, sections at their venue coordinates coloured by price tier,
// seats once zoomed in far enough to tell them apart (only the sections in view are drawn, so
// a 90,000-seat stadium pans and zooms smoothly). Wheel, drag and the buttons zoom and pan; a
// click on a seat or a standing area is handed to the page. Draw times are kept for the
// browser tests (data-draw-ms on the canvas, and ``timings``).

import { h } from "./dom";
import { SeatState, insidePolygon, tierColour, type Geometry, type SectionGeometry } from "./seatmap";

// Seats are drawn once they are this many CSS pixels apart.
const SEAT_PIXELS = 5;
const TAKEN = "#a3a8b3";
const OFF_SALE = "#e3e6ec";
const PICKED = "#111827";
const STAGE = "#2b2f3a";

export interface Hit {
  section: SectionGeometry;
  // Seat position, or -1 for a section (at section zoom, or a standing area).
  at: number;
}

export interface DrawTiming {
  ms: number;
  mode: "sections" | "seats";
  seats: number;
}

export class SeatMapView {
  readonly element: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  readonly timings: DrawTiming[] = [];
  private readonly ctx: CanvasRenderingContext2D;
  private scale = 1;
  private fitScale = 1;
  private tx = 0;
  private ty = 0;
  private cssWidth = 0;
  private cssHeight = 0;
  private pending = 0;
  private drag: { x: number; y: number; tx: number; ty: number; moved: boolean } | null = null;
  private focus: Hit | null = null;
  private readonly tip: HTMLElement;

  constructor(
    private readonly geometry: Geometry,
    private readonly picked: (section: SectionGeometry, at: number) => boolean,
    private readonly onPick: (hit: Hit) => void,
    private readonly describe: (hit: Hit) => string,
  ) {
    this.canvas = h("canvas", {
      class: "seatmap-canvas",
      "data-testid": "seat-map",
      role: "img",
      "aria-label": "Seat map: the sections, coloured by price tier. Use the seat list below with the keyboard.",
    });
    const ctx = this.canvas.getContext("2d");
    if (!ctx) throw new Error("no 2D canvas");
    this.ctx = ctx;
    this.tip = h("div", { class: "seatmap-tip", "aria-hidden": "true" });
    const button = (label: string, testid: string, act: () => void, text: string) =>
      h("button", { type: "button", "aria-label": label, title: label, "data-testid": testid, onclick: act }, text);
    this.element = h(
      "div",
      { class: "seatmap" },
      h(
        "div",
        { class: "seatmap-tools" },
        button("Zoom in", "zoom-in", () => this.zoomBy(1.6), "+"),
        button("Zoom out", "zoom-out", () => this.zoomBy(1 / 1.6), "−"),
        button("Show the whole venue", "zoom-reset", () => this.fit(), "⤢"),
      ),
      this.canvas,
      this.tip,
    );
    this.canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.canvas.addEventListener("pointerdown", (e) => this.onDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onUp(e));
    this.canvas.addEventListener("pointerleave", () => (this.tip.hidden = true));
    new ResizeObserver(() => this.resize()).observe(this.canvas);
  }

  // -- the view ----------------------------------------------------------------------------

  fit(): void {
    const { width, height } = this.geometry;
    this.fitScale = Math.min(this.cssWidth / width, this.cssHeight / height) * 0.96 || 1;
    this.scale = this.fitScale;
    this.tx = (this.cssWidth - width * this.scale) / 2;
    this.ty = (this.cssHeight - height * this.scale) / 2;
    this.redraw();
  }

  zoomBy(factor: number, cx = this.cssWidth / 2, cy = this.cssHeight / 2): void {
    const pitch = Math.min(...this.geometry.sections.filter((s) => !s.standing).map((s) => s.pitch), 1);
    const most = Math.max(this.fitScale * 2, 48 / pitch);
    const next = Math.min(most, Math.max(this.fitScale * 0.6, this.scale * factor));
    const k = next / this.scale;
    this.tx = cx - (cx - this.tx) * k;
    this.ty = cy - (cy - this.ty) * k;
    this.scale = next;
    this.redraw();
  }

  // Zoom so that a section fills the view (seats shown).
  show(section: SectionGeometry): void {
    const { x0, y0, x1, y1 } = section.box;
    const fill = Math.min(this.cssWidth / (x1 - x0 || 1), this.cssHeight / (y1 - y0 || 1)) * 0.8;
    const seats = section.standing ? 0 : (SEAT_PIXELS * 1.5) / section.pitch;
    this.scale = Math.max(this.fitScale, Math.min(fill, Math.max(seats, fill * 0.5)));
    this.tx = this.cssWidth / 2 - ((x0 + x1) / 2) * this.scale;
    this.ty = this.cssHeight / 2 - ((y0 + y1) / 2) * this.scale;
    this.redraw();
  }

  // Mark a seat (keyboard focus in the seat list) and bring it into view.
  setFocus(hit: Hit | null): void {
    this.focus = hit;
    if (hit && hit.at >= 0) {
      const [x, y] = this.toScreen(hit.section.xs[hit.at], hit.section.ys[hit.at]);
      if (!this.seatsShown(hit.section) || x < 0 || y < 0 || x > this.cssWidth || y > this.cssHeight) {
        this.show(hit.section);
        return;
      }
    }
    this.redraw();
  }

  // Where a seat is on the page (client pixels), for tests and tooltips; null when off view.
  clientPoint(section: SectionGeometry, at: number): { x: number; y: number } | null {
    const rect = this.canvas.getBoundingClientRect();
    const [x, y] =
      at >= 0 ? this.toScreen(section.xs[at], section.ys[at]) : this.toScreen(...centreOf(section));
    if (x < 0 || y < 0 || x > this.cssWidth || y > this.cssHeight) return null;
    return { x: rect.left + x, y: rect.top + y };
  }

  redraw(): void {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.draw();
    });
  }

  // Draw now; returns how long it took (ms). ``allSeats`` draws every seat whatever the zoom
  // (the benchmark of the worst case).
  draw(allSeats = false): DrawTiming {
    const started = performance.now();
    const { ctx, geometry } = this;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fbfbfd";
    ctx.fillRect(0, 0, this.cssWidth, this.cssHeight);
    ctx.setTransform(dpr * this.scale, 0, 0, dpr * this.scale, dpr * this.tx, dpr * this.ty);
    const px = 1 / this.scale; // one CSS pixel in venue metres
    if (geometry.stage.length) {
      ctx.fillStyle = STAGE;
      polygon(ctx, geometry.stage);
      ctx.fill();
    }
    let seats = 0;
    let seatMode = false;
    for (const section of geometry.sections) {
      if (!allSeats && !this.inView(section)) continue;
      const colour = tierColour(geometry, section.tier);
      const showSeats = allSeats || this.seatsShown(section);
      seatMode ||= showSeats && !section.standing;
      polygon(ctx, section.outline);
      ctx.globalAlpha = showSeats && !section.standing ? 0.12 : section.total === 0 ? 0.25 : section.available > 0 ? 0.85 : 0.35;
      ctx.fillStyle = section.total > 0 && section.available === 0 ? TAKEN : colour;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.lineWidth = px;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      if (section.standing) {
        this.drawStanding(section, colour, px);
      } else if (showSeats) {
        seats += this.drawSeats(section, colour);
      }
      if (this.focus?.section === section && (this.focus.at < 0 || section.standing)) {
        polygon(ctx, section.outline);
        ctx.lineWidth = 3 * px;
        ctx.strokeStyle = PICKED;
        ctx.stroke();
      }
    }
    const timing: DrawTiming = {
      ms: performance.now() - started,
      mode: seatMode ? "seats" : "sections",
      seats,
    };
    this.timings.push(timing);
    if (this.timings.length > 200) this.timings.shift();
    this.canvas.dataset.drawMs = timing.ms.toFixed(2);
    this.canvas.dataset.mode = timing.mode;
    this.canvas.dataset.draws = String(Number(this.canvas.dataset.draws ?? 0) + 1);
    return timing;
  }

  // -- drawing -----------------------------------------------------------------------------

  private drawSeats(section: SectionGeometry, colour: string): number {
    const { ctx } = this;
    const r = section.pitch * 0.42;
    const { xs, ys, state } = section;
    const round = section.pitch * this.scale >= 12;
    const groups: [number, string][] = [
      [SeatState.AVAILABLE, colour],
      [SeatState.HELD, TAKEN],
      [SeatState.SOLD, TAKEN],
      [SeatState.NONE, OFF_SALE],
    ];
    for (const [wanted, fill] of groups) {
      ctx.beginPath();
      for (let i = 0; i < xs.length; i++) {
        if (state[i] !== wanted) continue;
        if (round) {
          ctx.moveTo(xs[i] + r, ys[i]);
          ctx.arc(xs[i], ys[i], r, 0, 2 * Math.PI);
        } else {
          ctx.rect(xs[i] - r, ys[i] - r, 2 * r, 2 * r);
        }
      }
      ctx.fillStyle = fill;
      ctx.fill();
    }
    // The buyer's picks and the keyboard focus on top.
    ctx.beginPath();
    for (let i = 0; i < xs.length; i++) {
      if (!this.picked(section, i)) continue;
      ctx.moveTo(xs[i] + r * 1.15, ys[i]);
      ctx.arc(xs[i], ys[i], r * 1.15, 0, 2 * Math.PI);
    }
    ctx.fillStyle = PICKED;
    ctx.fill();
    if (this.focus?.section === section && this.focus.at >= 0) {
      const at = this.focus.at;
      ctx.beginPath();
      ctx.arc(xs[at], ys[at], r * 1.9, 0, 2 * Math.PI);
      ctx.lineWidth = Math.max(r * 0.35, 2 / this.scale);
      ctx.strokeStyle = "#f5b400";
      ctx.stroke();
    }
    return xs.length;
  }

  private drawStanding(section: SectionGeometry, colour: string, px: number): void {
    const { ctx } = this;
    const [cx, cy] = centreOf(section);
    const { x0, x1 } = section.box;
    const size = Math.min((x1 - x0) / 10, 32 * px);
    if (size < 6 * px) return;
    ctx.fillStyle = "#ffffff";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.font = `600 ${size}px "DejaVu Sans", sans-serif`;
    ctx.fillText(section.name, cx, cy - size * 0.7);
    ctx.font = `${size * 0.55}px "DejaVu Sans", sans-serif`;
    const places = section.standing.toLocaleString("en-GB");
    const line = section.total > 0 ? `${places} places · ${section.available.toLocaleString("en-GB")} free` : `${places} standing`;
    ctx.fillText(line, cx, cy + size * 0.5, x1 - x0);
    void colour;
  }

  // -- geometry ----------------------------------------------------------------------------

  private seatsShown(section: SectionGeometry): boolean {
    return !section.standing && section.pitch * this.scale >= SEAT_PIXELS;
  }

  private inView(section: SectionGeometry): boolean {
    const { x0, y0, x1, y1 } = section.box;
    const [ax, ay] = this.toScreen(x0, y0);
    const [bx, by] = this.toScreen(x1, y1);
    return bx >= 0 && by >= 0 && ax <= this.cssWidth && ay <= this.cssHeight;
  }

  private toScreen(x: number, y: number): [number, number] {
    return [x * this.scale + this.tx, y * this.scale + this.ty];
  }

  hitAt(clientX: number, clientY: number): Hit | null {
    const rect = this.canvas.getBoundingClientRect();
    const x = (clientX - rect.left - this.tx) / this.scale;
    const y = (clientY - rect.top - this.ty) / this.scale;
    for (const section of this.geometry.sections) {
      const { x0, y0, x1, y1 } = section.box;
      const slack = section.pitch;
      if (x < x0 - slack || x > x1 + slack || y < y0 - slack || y > y1 + slack) continue;
      if (this.seatsShown(section)) {
        let best = -1;
        let bestDistance = (section.pitch * 0.6) ** 2;
        for (let i = 0; i < section.xs.length; i++) {
          const d = (section.xs[i] - x) ** 2 + (section.ys[i] - y) ** 2;
          if (d < bestDistance) {
            best = i;
            bestDistance = d;
          }
        }
        if (best >= 0) return { section, at: best };
      }
      if (insidePolygon(x, y, section.outline)) return { section, at: -1 };
    }
    return null;
  }

  // -- input -------------------------------------------------------------------------------

  private resize(): void {
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    if (!width || !height || (width === this.cssWidth && height === this.cssHeight)) return;
    const first = this.cssWidth === 0;
    this.cssWidth = width;
    this.cssHeight = height;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    if (first) {
      this.fit();
      // The first full draw, timed on its own (not inside an animation frame).
      cancelAnimationFrame(this.pending);
      this.pending = 0;
      this.canvas.dataset.firstDrawMs = this.draw().ms.toFixed(2);
      this.canvas.dataset.ready = "true";
    } else {
      this.redraw();
    }
  }

  private onWheel(e: WheelEvent): void {
    e.preventDefault();
    const rect = this.canvas.getBoundingClientRect();
    this.zoomBy(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
  }

  private onDown(e: PointerEvent): void {
    this.drag = { x: e.clientX, y: e.clientY, tx: this.tx, ty: this.ty, moved: false };
    this.canvas.setPointerCapture(e.pointerId);
  }

  private onMove(e: PointerEvent): void {
    if (this.drag) {
      const dx = e.clientX - this.drag.x;
      const dy = e.clientY - this.drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) this.drag.moved = true;
      if (this.drag.moved) {
        this.tx = this.drag.tx + dx;
        this.ty = this.drag.ty + dy;
        this.tip.hidden = true;
        this.redraw();
        return;
      }
    }
    const hit = this.hitAt(e.clientX, e.clientY);
    if (!hit) {
      this.tip.hidden = true;
      return;
    }
    const rect = this.canvas.getBoundingClientRect();
    this.tip.textContent = this.describe(hit);
    this.tip.style.left = `${e.clientX - rect.left + 14}px`;
    this.tip.style.top = `${e.clientY - rect.top + 14}px`;
    this.tip.hidden = false;
  }

  private onUp(e: PointerEvent): void {
    const drag = this.drag;
    this.drag = null;
    if (drag?.moved) return;
    const hit = this.hitAt(e.clientX, e.clientY);
    if (!hit) return;
    if (hit.at < 0 && !hit.section.standing) {
      this.show(hit.section);
    }
    this.onPick(hit);
  }
}

function polygon(ctx: CanvasRenderingContext2D, points: readonly (readonly [number, number])[]): void {
  ctx.beginPath();
  points.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
  ctx.closePath();
}

function centreOf(section: SectionGeometry): [number, number] {
  let x = 0;
  let y = 0;
  for (const [px, py] of section.outline) {
    x += px;
    y += py;
  }
  const n = section.outline.length || 1;
  return [x / n, y / n];
}
