// The seat map as the page draws it: every section's outline and every seat's place in venue
// coordinates (ticketing.catalog.v1.SeatMapLayout: metres, x right, y down), worked out once
// from the venue's layout, and each seat's state as WatchAvailability and ListTickets report it.
// No DOM here: seatmap_view.ts draws it, views/event.ts wires it to the services.

import type { SeatMap, Section } from "../gen/ticketing/catalog/v1/catalog_pb";
import { TicketStatus, type Ticket } from "../gen/ticketing/catalog/v1/catalog_pb";

export type Point = readonly [number, number];

// What the map knows about one seat (or standing place).
export enum SeatState {
  // Not on sale at this event (no ticket), or not known yet.
  NONE = 0,
  AVAILABLE = 1,
  HELD = 2,
  SOLD = 3,
}

export function stateOf(status: TicketStatus): SeatState {
  switch (status) {
    case TicketStatus.AVAILABLE:
      return SeatState.AVAILABLE;
    case TicketStatus.HELD:
      return SeatState.HELD;
    case TicketStatus.BOOKED:
      return SeatState.SOLD;
    default:
      return SeatState.NONE;
  }
}

export interface SectionGeometry {
  readonly name: string;
  readonly tier: string;
  readonly index: number;
  // Places of a standing section (no seats drawn); 0 for a seated one.
  readonly standing: number;
  readonly outline: readonly Point[];
  readonly box: Box;
  // Seat positions in seat-map order (rows in order, seats by number); empty when standing.
  readonly xs: Float64Array;
  readonly ys: Float64Array;
  readonly rowOf: readonly string[];
  readonly seatOf: readonly string[];
  // First position of each row, and the row labels in order (for keyboard moves).
  readonly rowStarts: readonly number[];
  readonly rowLabels: readonly string[];
  // Distance from one seat to the next (metres), for how big to draw them.
  readonly pitch: number;
  // Positions: seats (or standing places 1..standing) -> state, ticket when listed.
  readonly state: Uint8Array;
  readonly tickets: (Ticket | undefined)[];
  // Listed tickets' positions by ticket id (a standing place's ticket names no place, so its
  // position is only its place in the listing).
  readonly byTicket: Map<string, number>;
  // Which positions have a ticket on sale at this event; null until known.
  ticketed: number[] | null;
  // Snapshot counts, kept up to date by the changes.
  available: number;
  total: number;
  listed: boolean;
}

export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface Geometry {
  readonly width: number;
  readonly height: number;
  readonly stage: readonly Point[];
  readonly sections: readonly SectionGeometry[];
  readonly byName: ReadonlyMap<string, SectionGeometry>;
  readonly tiers: readonly string[];
  readonly seatCount: number;
}

// The drawing of a seat map, or null when the venue has none (the page then lists seats).
export function geometryOf(seatMap: SeatMap | undefined): Geometry | null {
  const layout = seatMap?.layout;
  if (!seatMap || !layout || layout.width <= 0 || layout.height <= 0) return null;
  const tiers: string[] = [];
  const sections: SectionGeometry[] = [];
  let seatCount = 0;
  for (const [index, section] of seatMap.sections.entries()) {
    const outline = outlineOf(section);
    if (!outline) return null;
    if (!tiers.includes(section.priceTier)) tiers.push(section.priceTier);
    const built = seatsOf(section);
    seatCount += section.standingCapacity > 0 ? section.standingCapacity : built.xs.length;
    const positions = section.standingCapacity > 0 ? section.standingCapacity : built.xs.length;
    sections.push({
      name: section.name,
      tier: section.priceTier,
      index,
      standing: section.standingCapacity,
      outline,
      box: boxOf(outline),
      ...built,
      state: new Uint8Array(positions),
      tickets: new Array<Ticket | undefined>(positions),
      byTicket: new Map(),
      ticketed: null,
      available: 0,
      total: 0,
      listed: false,
    });
  }
  return {
    width: layout.width,
    height: layout.height,
    stage: (layout.stage?.points ?? []).map((p) => [p.x, p.y] as const),
    sections,
    byName: new Map(sections.map((s) => [s.name, s])),
    tiers,
    seatCount,
  };
}

function outlineOf(section: Section): Point[] | null {
  const shape = section.layout?.shape;
  if (shape?.case === "polygon") return shape.value.points.map((p) => [p.x, p.y] as const);
  if (shape?.case === "block") {
    const { center, width, depth, rotationDegrees } = shape.value;
    const cx = center?.x ?? 0;
    const cy = center?.y ?? 0;
    const t = (rotationDegrees * Math.PI) / 180;
    const w = width / 2;
    const d = depth / 2;
    return (
      [
        [-w, -d],
        [w, -d],
        [w, d],
        [-w, d],
      ] as const
    ).map(([x, y]) => [cx + x * Math.cos(t) - y * Math.sin(t), cy + x * Math.sin(t) + y * Math.cos(t)] as const);
  }
  return null;
}

function seatsOf(section: Section) {
  const xs: number[] = [];
  const ys: number[] = [];
  const rowOf: string[] = [];
  const seatOf: string[] = [];
  const rowStarts: number[] = [];
  const rowLabels: string[] = [];
  let pitch = Infinity;
  for (const row of section.rows) {
    const layout = row.layout;
    if (!layout?.start || !layout.end || row.seatCount < 1) continue;
    rowStarts.push(xs.length);
    rowLabels.push(row.label);
    const start: Point = [layout.start.x, layout.start.y];
    const end: Point = [layout.end.x, layout.end.y];
    for (let i = 0; i < row.seatCount; i++) {
      const [x, y] = arcPoint(start, end, layout.curve, row.seatCount === 1 ? 0.5 : i / (row.seatCount - 1));
      xs.push(x);
      ys.push(y);
      rowOf.push(row.label);
      seatOf.push(String(i + 1));
    }
    if (row.seatCount > 1) {
      const n = xs.length;
      pitch = Math.min(pitch, Math.hypot(xs[n - 1] - xs[n - 2], ys[n - 1] - ys[n - 2]));
    }
  }
  return {
    xs: Float64Array.from(xs),
    ys: Float64Array.from(ys),
    rowOf,
    seatOf,
    rowStarts,
    rowLabels,
    pitch: Number.isFinite(pitch) ? pitch : 0.5,
  };
}

// A point a fraction t along a row's arc (the same construction as deploy/demo_data/layouts.py
// row_points: the arc bows by curve towards (-dy, dx) of start -> end at its middle).
export function arcPoint(start: Point, end: Point, curve: number, t: number): Point {
  const [sx, sy] = start;
  const [ex, ey] = end;
  const dx = ex - sx;
  const dy = ey - sy;
  const chord = Math.hypot(dx, dy);
  if (Math.abs(curve) < 1e-9 || chord === 0) return [sx + dx * t, sy + dy * t];
  const nx = -dy / chord;
  const ny = dx / chord;
  const radius = (chord * chord) / 4 / (2 * curve) + curve / 2;
  const cx = (sx + ex) / 2 + nx * (curve - radius);
  const cy = (sy + ey) / 2 + ny * (curve - radius);
  const a0 = Math.atan2(sy - cy, sx - cx);
  const a1 = Math.atan2(ey - cy, ex - cx);
  const am = Math.atan2((sy + ey) / 2 + ny * curve - cy, (sx + ex) / 2 + nx * curve - cx);
  const turn = 2 * Math.PI;
  let sweep = (((a1 - a0) % turn) + turn) % turn;
  if (((((am - a0) % turn) + turn) % turn) > sweep) sweep -= turn;
  const a = a0 + sweep * t;
  const r = Math.abs(radius);
  return [cx + r * Math.cos(a), cy + r * Math.sin(a)];
}

function boxOf(points: readonly Point[]): Box {
  const box = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
  for (const [x, y] of points) {
    box.x0 = Math.min(box.x0, x);
    box.y0 = Math.min(box.y0, y);
    box.x1 = Math.max(box.x1, x);
    box.y1 = Math.max(box.y1, y);
  }
  return box;
}

export function insidePolygon(x: number, y: number, polygon: readonly Point[]): boolean {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

// Position of a seat (row label, seat label) in its section, or -1. A standing place's "seat"
// is its place number.
export function positionOf(section: SectionGeometry, row: string, seat: string): number {
  if (section.standing > 0) {
    const n = Number(seat);
    return Number.isInteger(n) && n >= 1 && n <= section.standing ? n - 1 : -1;
  }
  const r = section.rowLabels.indexOf(row);
  if (r < 0) return -1;
  const n = Number(seat);
  const start = section.rowStarts[r];
  const end = r + 1 < section.rowStarts.length ? section.rowStarts[r + 1] : section.xs.length;
  return Number.isInteger(n) && n >= 1 && start + n - 1 < end ? start + n - 1 : -1;
}

// A snapshot's runs for a section: states in the order of its ticketed seats. Whole sections
// on sale map one to one; otherwise the listed tickets say which seats the runs cover. Returns
// whether the section's seat states are now known. A standing section's runs give its counts
// only (its tickets name no place): its states come from listing its tickets.
export function applyRuns(
  section: SectionGeometry,
  runs: readonly { status: TicketStatus; count: number }[],
): boolean {
  let total = 0;
  let available = 0;
  for (const run of runs) {
    total += run.count;
    if (run.status === TicketStatus.AVAILABLE) available += run.count;
  }
  section.total = total;
  section.available = available;
  if (section.standing > 0) return false;
  let order = section.ticketed;
  if (!order && total === section.state.length) order = [...section.state.keys()];
  if (!order || order.length !== total) return false;
  section.ticketed = order;
  section.state.fill(SeatState.NONE);
  let at = 0;
  for (const run of runs) {
    const value = stateOf(run.status);
    for (let i = 0; i < run.count; i++) section.state[order[at++]] = value;
  }
  return true;
}

// One changed ticket; returns the position it changed, or -1 when the map has no such seat.
export function applyChange(
  section: SectionGeometry,
  ticketId: string,
  row: string,
  seat: string,
  status: TicketStatus,
): number {
  const at = section.byTicket.get(ticketId) ?? (section.standing > 0 ? -1 : positionOf(section, row, seat));
  if (at < 0) {
    // A standing place not listed yet: its count moves by the change's direction.
    if (section.standing > 0 && section.total > 0) {
      const up = status === TicketStatus.AVAILABLE ? 1 : -1;
      section.available = Math.min(section.total, Math.max(0, section.available + up));
    }
    return -1;
  }
  const before = section.state[at];
  const after = stateOf(status);
  if (before === SeatState.AVAILABLE && after !== SeatState.AVAILABLE) section.available -= 1;
  if (before !== SeatState.AVAILABLE && before !== SeatState.NONE && after === SeatState.AVAILABLE) {
    section.available += 1;
  }
  section.state[at] = after;
  const ticket = section.tickets[at];
  if (ticket) ticket.status = status;
  return at;
}

// A section's listed tickets: which seats are on sale, their ids and prices, and their states
// (except those in ``changedSince``, which a newer change already set).
export function applyListing(section: SectionGeometry, tickets: readonly Ticket[], fresher: ReadonlySet<number>): void {
  const order: number[] = [];
  for (const [index, ticket] of tickets.entries()) {
    const at = section.standing > 0 ? (index < section.standing ? index : -1) : positionOf(section, ticket.row, ticket.seat);
    if (at < 0) continue;
    order.push(at);
    section.byTicket.set(ticket.id, at);
    section.tickets[at] = ticket;
    if (fresher.has(at)) ticket.status = statusOf(section.state[at]);
    else section.state[at] = stateOf(ticket.status);
  }
  order.sort((a, b) => a - b);
  section.ticketed = order;
  section.total = order.length;
  section.available = order.filter((at) => section.state[at] === SeatState.AVAILABLE).length;
  section.listed = true;
}

function statusOf(state: number): TicketStatus {
  if (state === SeatState.AVAILABLE) return TicketStatus.AVAILABLE;
  if (state === SeatState.HELD) return TicketStatus.HELD;
  if (state === SeatState.SOLD) return TicketStatus.BOOKED;
  return TicketStatus.UNSPECIFIED;
}

// How a person reads a seat: "Stalls, row F, seat 12, £45".
export function seatLabel(section: SectionGeometry, at: number, price: string): string {
  const place =
    section.standing > 0
      ? `${section.name}, standing place ${at + 1}`
      : `${section.name}, row ${section.rowOf[at]}, seat ${section.seatOf[at]}`;
  return price ? `${place}, ${price}` : place;
}

// Colours of the price tiers, in the order the seat map first names them.
const TIER_COLOURS = ["#3157d5", "#1c8a4c", "#c9761a", "#c2307a", "#7447c9", "#118394", "#6a8f1a", "#b23a2e"];

export function tierColour(geometry: Geometry, tier: string): string {
  const index = geometry.tiers.indexOf(tier);
  return TIER_COLOURS[(index < 0 ? 0 : index) % TIER_COLOURS.length];
}
