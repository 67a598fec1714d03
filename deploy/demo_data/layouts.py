"""Drawings of the demo venues: where each section and row lies, in venue coordinates.

Coordinates are metres, x to the right and y down the page, the origin at the drawing's top
left corner (``ticketing.catalog.v1.SeatMapLayout``). A section is a wedge of a bowl (a
polygon between two arcs around the stage or pitch) or a rotated block; a row is an arc from
its first seat to its last, described by its two ends and how far its middle bows off the
straight line (``RowLayout.curve``, positive towards ``(-dy, dx)`` of start -> end).

Each kind of venue gets the shape people know: an arena or a stadium is a bowl of wedges
around the floor (a stadium's floor is standing room on the pitch), a theatre a fan of stalls
and circles facing the stage with boxes at the side, a hall (the Royal Albert Hall) a full
ring around an arena floor, an amphitheatre a fan of three tiers, a club a standing floor
with a balcony behind it. Row 1 is always nearest the stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deploy.demo_data.records import Section

Point = tuple[float, float]

ROW_DEPTH = 0.8  # metres from one row to the next
RING_GAP = 2.0  # the aisle between two rings of a bowl
ARC_STEP_DEGREES = 3.0  # a wedge's arcs become polygon edges of at most this many degrees


@dataclass(frozen=True, slots=True)
class RowLayout:
    start: Point
    end: Point
    curve: float

    def document(self) -> dict[str, Any]:
        return {"start": list(self.start), "end": list(self.end), "curve": round(self.curve, 3)}


@dataclass(frozen=True, slots=True)
class SectionLayout:
    # Exactly one of polygon and block: a block is (centre, width, depth, rotation degrees).
    polygon: tuple[Point, ...] | None
    block: tuple[Point, float, float, float] | None
    rows: tuple[RowLayout, ...]

    def outline(self) -> tuple[Point, ...]:
        """The section's outline as a polygon (a block's four corners)."""
        if self.polygon is not None:
            return self.polygon
        assert self.block is not None
        (cx, cy), width, depth, rotation = self.block
        w, d = width / 2, depth / 2
        corners = ((-w, -d), (w, -d), (w, d), (-w, d))
        return tuple(_place((cx, cy), rotation, p) for p in corners)

    def document(self) -> dict[str, Any]:
        if self.polygon is not None:
            shape: dict[str, Any] = {"polygon": [_round(p) for p in self.polygon]}
        else:
            assert self.block is not None
            centre, width, depth, rotation = self.block
            shape = {
                "block": {
                    "center": _round(centre),
                    "width": round(width, 3),
                    "depth": round(depth, 3),
                    "rotation_degrees": round(rotation, 3),
                }
            }
        return shape


@dataclass(frozen=True, slots=True)
class VenueLayout:
    width: float
    height: float
    stage: tuple[Point, ...]
    sections: dict[str, SectionLayout]

    def document(self) -> dict[str, Any]:
        """The seat map document's top-level ``layout``."""
        return {
            "width": round(self.width, 3),
            "height": round(self.height, 3),
            "stage": [_round(p) for p in self.stage],
        }


# --- geometry -------------------------------------------------------------------------------


def _round(p: Point) -> list[float]:
    return [round(p[0], 3), round(p[1], 3)]


def _place(centre: Point, rotation_degrees: float, local: Point) -> Point:
    t = math.radians(rotation_degrees)
    x, y = local
    return (
        centre[0] + x * math.cos(t) - y * math.sin(t),
        centre[1] + x * math.sin(t) + y * math.cos(t),
    )


def _polar(centre: Point, radius: float, angle: float) -> Point:
    return (centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle))


def _curve(start: Point, end: Point, middle: Point) -> float:
    """The signed distance of ``middle`` from the chord start -> end, along (-dy, dx)."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy)
    mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    return ((middle[0] - mx) * -dy + (middle[1] - my) * dx) / length


def row_points(row: RowLayout, count: int) -> list[Point]:
    """Where ``count`` seats of a row are drawn: evenly along its arc (what a client does)."""
    if count == 1:
        return [_arc_point(row, 0.5)]
    return [_arc_point(row, i / (count - 1)) for i in range(count)]


def _arc_point(row: RowLayout, t: float) -> Point:
    (sx, sy), (ex, ey) = row.start, row.end
    dx, dy = ex - sx, ey - sy
    chord = math.hypot(dx, dy)
    nx, ny = -dy / chord, dx / chord
    h = row.curve
    if abs(h) < 1e-9:
        return (sx + dx * t, sy + dy * t)
    radius = (chord * chord / 4 + h * h) / (2 * h)  # signed: the centre lies along -n
    cx = (sx + ex) / 2 + nx * (h - radius)
    cy = (sy + ey) / 2 + ny * (h - radius)
    a0 = math.atan2(sy - cy, sx - cx)
    a1 = math.atan2(ey - cy, ex - cx)
    am = math.atan2((sy + ey) / 2 + ny * h - cy, (sx + ex) / 2 + nx * h - cx)
    # Sweep from a0 to a1 through am.
    sweep = (a1 - a0) % (2 * math.pi)
    if (am - a0) % (2 * math.pi) > sweep:
        sweep -= 2 * math.pi
    a = a0 + sweep * t
    r = abs(radius)
    return (cx + r * math.cos(a), cy + r * math.sin(a))


def point_in_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    x, y = p
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    def orient(p: Point, q: Point, r: Point) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    d1, d2 = orient(c, d, a), orient(c, d, b)
    d3, d4 = orient(a, b, c), orient(a, b, d)
    return d1 * d2 < 0 and d3 * d4 < 0


def polygons_overlap(p: Sequence[Point], q: Sequence[Point]) -> bool:
    """True when two simple polygons share interior (edges crossing, or one inside the other)."""
    for i in range(len(p)):
        for j in range(len(q)):
            if _segments_cross(p[i], p[(i + 1) % len(p)], q[j], q[(j + 1) % len(q)]):
                return True
    # No edges cross: they overlap only if one lies inside the other, vertices and all.
    return point_in_polygon(p[0], q) or point_in_polygon(q[0], p)


# --- shapes ---------------------------------------------------------------------------------


def _wedge(
    centre: Point, r_in: float, a0: float, a1: float, section: Section
) -> tuple[SectionLayout, float]:
    """A wedge of a ring around ``centre`` from angle a0 to a1 (degrees, y down: 90 is
    straight down the page), deep enough for the section's rows; returns it and its outer
    radius. A standing section gets the depth of a block of 6 rows and no rows."""
    rows = section.rows
    r_out = r_in + ROW_DEPTH * (len(rows) if rows else 6)
    t0, t1 = math.radians(a0), math.radians(a1)
    steps = max(4, math.ceil((a1 - a0) / ARC_STEP_DEGREES))
    inner = [_polar(centre, r_in, t0 + (t1 - t0) * i / steps) for i in range(steps + 1)]
    outer = [_polar(centre, r_out, t1 - (t1 - t0) * i / steps) for i in range(steps + 1)]
    widest = max((row.seats for row in rows), default=1)
    row_layouts = []
    for i, row in enumerate(rows):
        radius = r_in + ROW_DEPTH * (i + 0.5)
        usable = (t1 - t0) - 2 * min(0.1 * (t1 - t0), 0.4 / radius)
        half = usable * row.seats / widest / 2
        mid = (t0 + t1) / 2
        start, end = _polar(centre, radius, mid - half), _polar(centre, radius, mid + half)
        middle = _polar(centre, radius, mid)
        row_layouts.append(RowLayout(start, end, _curve(start, end, middle)))
    return SectionLayout(tuple(inner + outer), None, tuple(row_layouts)), r_out


def _block(
    centre: Point, width: float, depth: float, rotation: float, section: Section
) -> SectionLayout:
    """A rectangle whose front edge (local -y) faces the stage; rows straight, row 1 at the
    front, each as long as its share of the widest row."""
    rows = section.rows
    widest = max((row.seats for row in rows), default=1)
    row_layouts = []
    for i, row in enumerate(rows):
        y = -depth / 2 + depth * (i + 0.5) / len(rows)
        half = (width * 0.9) * row.seats / widest / 2
        start, end = _place(centre, rotation, (-half, y)), _place(centre, rotation, (half, y))
        row_layouts.append(RowLayout(start, end, 0.0))
    return SectionLayout(None, (centre, width, depth, rotation), tuple(row_layouts))


def _ring(
    centre: Point,
    r_in: float,
    sections: Sequence[Section],
    start_degrees: float,
    end_degrees: float,
    gap_degrees: float = 0.6,
) -> tuple[dict[str, SectionLayout], float]:
    """Sections side by side as wedges of one ring, from start to end angle; the ring is as
    deep as its deepest section."""
    out: dict[str, SectionLayout] = {}
    step = (end_degrees - start_degrees) / len(sections)
    r_out = r_in
    for i, section in enumerate(sections):
        a0 = start_degrees + i * step + gap_degrees / 2
        shape, outer = _wedge(centre, r_in, a0, a0 + step - gap_degrees, section)
        out[section.name] = shape
        r_out = max(r_out, outer)
    return out, r_out


def _rect(x0: float, y0: float, x1: float, y1: float) -> tuple[Point, ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _bowl(
    sections: Sequence[Section], floor_depth: float, floor_width: float
) -> tuple[dict[str, SectionLayout], tuple[Point, ...], float]:
    """An arena or a stadium: a floor (``Floor *`` sections) in front of a stage at the left
    end, rings of wedges all round. Returns the shapes, the stage and the drawing's half
    size around its centre at (0, 0) (moved later)."""
    floor = [s for s in sections if s.name.startswith("Floor ")]
    rest = [s for s in sections if not s.name.startswith("Floor ")]
    half_w, half_h = floor_width / 2, floor_depth / 2
    stage_w = floor_width * 0.15
    stage = _rect(-half_w, -half_h * 0.6, -half_w + stage_w, half_h * 0.6)
    shapes: dict[str, SectionLayout] = {}
    # The floor in a grid of blocks facing the stage (rotation -90: front edge towards -x).
    cols = 3 if len(floor) % 3 == 0 else 2
    lines = max(1, math.ceil(len(floor) / cols))
    x_from = -half_w + stage_w + 2.0
    cell_w = (half_w - x_from) / cols
    cell_h = floor_depth / lines
    for i, section in enumerate(floor):
        col, line = i % cols, i // cols
        cx = x_from + cell_w * (col + 0.5)
        cy = -half_h + cell_h * (line + 0.5)
        shapes[section.name] = _block((cx, cy), cell_h - 1.5, cell_w - 1.5, -90.0, section)
    # Rings by the hundreds digit of the section number (101.., 201.., 301..).
    radius = math.hypot(half_w, half_h) + 3.0
    for level in sorted({s.name[0] for s in rest}):
        ring = [s for s in rest if s.name[0] == level]
        ring_shapes, outer = _ring((0.0, 0.0), radius, ring, -180.0, 180.0)
        shapes.update(ring_shapes)
        radius = outer + RING_GAP
    return shapes, stage, radius


def _fan(
    tiers: Sequence[Sequence[Section]], r_first: float, spread: float
) -> tuple[dict[str, SectionLayout], float]:
    """Tiers of a theatre or an amphitheatre facing a stage at (0, 0) above them: each tier a
    ring of wedges spanning ``spread`` degrees around straight down (90)."""
    shapes: dict[str, SectionLayout] = {}
    radius = r_first
    for tier in tiers:
        ring_shapes, outer = _ring(
            (0.0, 0.0), radius, tier, 90 - spread / 2, 90 + spread / 2, gap_degrees=2.5
        )
        shapes.update(ring_shapes)
        radius = outer + RING_GAP
    return shapes, radius


def _moved(shape: SectionLayout, dx: float, dy: float) -> SectionLayout:
    def mv(p: Point) -> Point:
        return (p[0] + dx, p[1] + dy)

    rows = tuple(RowLayout(mv(r.start), mv(r.end), r.curve) for r in shape.rows)
    if shape.polygon is not None:
        return SectionLayout(tuple(mv(p) for p in shape.polygon), None, rows)
    assert shape.block is not None
    centre, width, depth, rotation = shape.block
    return SectionLayout(None, (mv(centre), width, depth, rotation), rows)


def _framed(
    shapes: dict[str, SectionLayout], stage: tuple[Point, ...], margin: float = 2.0
) -> VenueLayout:
    """Moves everything so the drawing starts at (margin, margin) and sizes it."""
    points = [p for s in shapes.values() for p in s.outline()] + list(stage)
    x0 = min(x for x, _ in points) - margin
    y0 = min(y for _, y in points) - margin
    x1 = max(x for x, _ in points) + margin
    y1 = max(y for _, y in points) + margin
    moved = {name: _moved(s, -x0, -y0) for name, s in shapes.items()}
    return VenueLayout(x1 - x0, y1 - y0, tuple((x - x0, y - y0) for x, y in stage), moved)


# --- the kinds of venue ---------------------------------------------------------------------


def layout_for(kind: str, sections: Sequence[Section]) -> VenueLayout:
    """The drawing of a venue of this kind with these sections (the generator's seat maps)."""
    by_name = {s.name: s for s in sections}
    match kind:
        case "stadium":
            shapes, stage, _ = _bowl(sections, floor_depth=68.0, floor_width=105.0)
        case "arena":
            shapes, stage, _ = _bowl(sections, floor_depth=28.0, floor_width=56.0)
        case "theater":
            tiers = [[by_name[n]] for n in ("Stalls", "Dress Circle", "Upper Circle", "Balcony")]
            shapes, _ = _fan(tiers, r_first=8.0, spread=80.0)
            boxes = by_name["Boxes"]
            depth = ROW_DEPTH * 2 * len(boxes.rows)
            # Along the left wall, level with the stage's front, box 1 nearest the stage.
            shapes["Boxes"] = _block((-26.0, 6.0 + depth / 2), 3.5, depth, 0.0, boxes)
            stage = _rect(-10.0, -6.0, 10.0, 4.0)
        case "hall":
            # A full ring round an arena floor, the stage at the top (the Royal Albert Hall).
            arena = by_name["Arena"]
            depth = ROW_DEPTH * len(arena.rows)
            shapes = {"Arena": _block((0.0, depth / 2 - 4.0), 18.0, depth, 0.0, arena)}
            stage = _rect(-9.0, -17.0, 9.0, -9.0)
            radius = math.hypot(9.0, depth - 4.0) + 4.0
            left, outer_l = _ring((0.0, 0.0), radius, [by_name["Stalls Left"]], 110.0, 235.0)
            right, outer_r = _ring((0.0, 0.0), radius, [by_name["Stalls Right"]], -55.0, 70.0)
            shapes |= left | right
            radius = max(outer_l, outer_r) + RING_GAP
            for name in ("Grand Tier", "Circle", "Gallery"):
                ring, outer = _ring((0.0, 0.0), radius, [by_name[name]], -60.0, 240.0)
                shapes |= ring
                radius = outer + RING_GAP
        case "amphitheater":
            pit = by_name["Pit"]
            tiers = [[pit]] + [
                [by_name[f"{area} {side}"] for side in ("Right", "Centre", "Left")]
                for area in ("Orchestra", "Terrace", "Upper Bench")
            ]
            shapes, _ = _fan(tiers, r_first=9.0, spread=120.0)
            stage = _rect(-7.0, -8.0, 7.0, 3.0)
        case "club":
            shapes = {}
            stage = _rect(-8.0, -5.0, 8.0, 0.0)
            y = 2.0
            for section in sections:
                depth = ROW_DEPTH * (len(section.rows) if section.rows else 25)
                shapes[section.name] = _block((0.0, y + depth / 2), 24.0, depth, 0.0, section)
                y += depth + RING_GAP
        case _:
            raise ValueError(f"no layout for venue kind {kind!r}")
    missing = set(by_name) - set(shapes)
    if missing:
        raise ValueError(f"{kind}: no shape for sections {sorted(missing)}")
    return _framed(shapes, stage)
