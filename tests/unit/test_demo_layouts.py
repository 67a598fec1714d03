"""The demo venues' drawings: what a buyer would notice if they were wrong."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest

from deploy.demo_data.generator import generate_venues
from deploy.demo_data.layouts import (
    Point,
    RowLayout,
    SectionLayout,
    layout_for,
    point_in_polygon,
    polygons_overlap,
    row_points,
)
from deploy.demo_data.records import SeatRow, Section, Venue

VENUES = generate_venues()


def _bbox(points: Sequence[Point]) -> tuple[float, float, float, float]:
    return (
        min(x for x, _ in points),
        min(y for _, y in points),
        max(x for x, _ in points),
        max(y for _, y in points),
    )


def _boxes_meet(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _one_of_each_kind() -> list[Venue]:
    seen: dict[str, Venue] = {}
    for venue in VENUES:
        seen.setdefault(venue.kind, venue)
    return list(seen.values())


@pytest.mark.parametrize("venue", _one_of_each_kind(), ids=lambda v: v.kind)
def test_sections_do_not_overlap_each_other_or_the_stage(venue: Venue) -> None:
    layout = layout_for(venue.kind, venue.sections)
    outlines = {name: shape.outline() for name, shape in layout.sections.items()}
    boxes = {name: _bbox(points) for name, points in outlines.items()}
    names = sorted(outlines)
    for i, a in enumerate(names):
        assert not polygons_overlap(outlines[a], layout.stage), (venue.name, a, "stage")
        for b in names[i + 1 :]:
            if _boxes_meet(boxes[a], boxes[b]):
                assert not polygons_overlap(outlines[a], outlines[b]), (venue.name, a, b)


@pytest.mark.parametrize("venue", VENUES, ids=lambda v: v.key)
def test_every_seat_is_drawn_inside_its_section_and_the_drawing(venue: Venue) -> None:
    layout = layout_for(venue.kind, venue.sections)
    assert set(layout.sections) == {s.name for s in venue.sections}
    for section in venue.sections:
        shape = layout.sections[section.name]
        outline = shape.outline()
        assert len(shape.rows) == len(section.rows)
        for row, row_layout in zip(section.rows, shape.rows, strict=True):
            for x, y in row_points(row_layout, row.seats):
                assert point_in_polygon((x, y), outline), (venue.name, section.name, row.label)
                assert 0 < x < layout.width and 0 < y < layout.height


@pytest.mark.parametrize("venue", _one_of_each_kind(), ids=lambda v: v.kind)
def test_row_one_is_nearest_the_stage(venue: Venue) -> None:
    layout = layout_for(venue.kind, venue.sections)
    sx = sum(x for x, _ in layout.stage) / len(layout.stage)
    sy = sum(y for _, y in layout.stage) / len(layout.stage)

    def distance(row: RowLayout) -> float:
        mx, my = row_points(row, 3)[1]
        return math.hypot(mx - sx, my - sy)

    for name, shape in layout.sections.items():
        if len(shape.rows) > 1:
            assert distance(shape.rows[0]) < distance(shape.rows[-1]), (venue.name, name)


def test_seats_of_a_row_are_spread_along_it_not_piled_up() -> None:
    venue = next(v for v in VENUES if v.kind == "arena")
    layout = layout_for(venue.kind, venue.sections)
    row = layout.sections["101"].rows[0]
    points = row_points(row, 20)
    gaps = [math.dist(a, b) for a, b in itertools.pairwise(points)]
    assert min(gaps) > 0.3 and max(gaps) < 1.5 * min(gaps)


def test_curved_and_straight_rows_follow_the_arc_they_describe() -> None:
    straight = RowLayout((0.0, 0.0), (10.0, 0.0), 0.0)
    assert row_points(straight, 3) == [(0.0, 0.0), (5.0, 0.0), (10.0, 0.0)]
    # Bowing by +2 towards (-dy, dx) = (0, 10): the middle seat is at y = 2.
    bowed = row_points(RowLayout((0.0, 0.0), (10.0, 0.0), 2.0), 3)
    assert bowed[0] == pytest.approx((0.0, 0.0), abs=1e-9)
    assert bowed[1] == pytest.approx((5.0, 2.0), abs=1e-9)
    assert bowed[2] == pytest.approx((10.0, 0.0), abs=1e-9)


def test_the_overlap_check_sees_an_overlap() -> None:
    """Control: two blocks placed over each other are caught."""
    a = SectionLayout(None, ((0.0, 0.0), 10.0, 10.0, 0.0), ())
    b = SectionLayout(None, ((5.0, 5.0), 10.0, 10.0, 30.0), ())
    inside = SectionLayout(None, ((0.0, 0.0), 2.0, 2.0, 0.0), ())
    assert polygons_overlap(a.outline(), b.outline())
    assert polygons_overlap(a.outline(), inside.outline())


def test_a_standing_section_gets_a_shape_and_no_rows() -> None:
    sections = (
        Section("General Admission", "standard", (), standing_capacity=500),
        Section("Balcony", "premium", (SeatRow("A", 20), SeatRow("B", 22))),
    )
    layout = layout_for("club", sections)
    assert layout.sections["General Admission"].rows == ()
    assert len(layout.sections["Balcony"].rows) == 2


def test_the_stored_document_carries_the_layout() -> None:
    venue = next(v for v in VENUES if v.kind == "theater")
    document = venue.seat_map()
    assert document["layout"]["width"] > 0 and len(document["layout"]["stage"]) >= 3
    stalls = next(s for s in document["sections"] if s["name"] == "Stalls")
    assert "polygon" in stalls["layout"]
    assert {"start", "end", "curve"} <= set(stalls["rows"][0]["layout"])
