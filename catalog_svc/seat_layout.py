"""How a seat map is drawn (``ticketing.catalog.v1.SeatMapLayout``), free of gRPC and SQL.

Venue coordinates are metres, x to the right and y down, the origin at the top left. A
section is a polygon or a rotated block; a row is an arc from its first seat to its last that
bows ``curve`` metres off the straight line. Stored inside the ``venues.seat_map`` document
(``layout`` keys next to the sections and rows it describes), so a venue without a drawing is
the same document as before.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ticketing_common.errors import InvalidArgument

Point = tuple[float, float]


def _point(value: Any) -> Point:
    return (float(value[0]), float(value[1]))


def _finite(field: str, *values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgument(
            f"{field} needs finite coordinates", metadata={"field": "seat_map.layout"}
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RowLayout:
    start: Point
    end: Point
    curve: float = 0.0

    def validate(self, where: str) -> None:
        _finite(where, *self.start, *self.end, self.curve)
        if self.start == self.end:
            raise InvalidArgument(
                f"{where}: a row's start and end must differ",
                metadata={"field": "seat_map.layout"},
            )

    def to_document(self) -> dict[str, Any]:
        return {"start": list(self.start), "end": list(self.end), "curve": self.curve}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> RowLayout:
        return cls(_point(doc["start"]), _point(doc["end"]), float(doc.get("curve", 0.0)))


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    center: Point
    width: float
    depth: float
    rotation_degrees: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class SectionLayout:
    """Exactly one of ``polygon`` (three points or more) and ``block``."""

    polygon: tuple[Point, ...] = ()
    block: Block | None = None

    def validate(self, where: str) -> None:
        if (len(self.polygon) >= 3) == (self.block is not None):
            raise InvalidArgument(
                f"{where}: a section's layout is a polygon of 3+ points or a block",
                metadata={"field": "seat_map.layout"},
            )
        for p in self.polygon:
            _finite(where, *p)
        if self.block is not None:
            b = self.block
            _finite(where, *b.center, b.width, b.depth, b.rotation_degrees)
            if b.width <= 0 or b.depth <= 0:
                raise InvalidArgument(
                    f"{where}: a block needs a positive width and depth",
                    metadata={"field": "seat_map.layout"},
                )

    def to_document(self) -> dict[str, Any]:
        if self.block is not None:
            b = self.block
            return {
                "block": {
                    "center": list(b.center),
                    "width": b.width,
                    "depth": b.depth,
                    "rotation_degrees": b.rotation_degrees,
                }
            }
        return {"polygon": [list(p) for p in self.polygon]}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SectionLayout:
        if "block" in doc:
            b = doc["block"]
            return cls(
                block=Block(
                    _point(b["center"]),
                    float(b["width"]),
                    float(b["depth"]),
                    float(b.get("rotation_degrees", 0.0)),
                )
            )
        return cls(polygon=tuple(_point(p) for p in doc.get("polygon", [])))


@dataclasses.dataclass(frozen=True, slots=True)
class SeatMapLayout:
    width: float
    height: float
    stage: tuple[Point, ...] = ()

    def validate(self) -> None:
        _finite("seat_map.layout", self.width, self.height)
        if self.width <= 0 or self.height <= 0:
            raise InvalidArgument(
                "seat_map.layout needs a positive width and height",
                metadata={"field": "seat_map.layout"},
            )
        for p in self.stage:
            _finite("seat_map.layout.stage", *p)

    def to_document(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "stage": [list(p) for p in self.stage]}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SeatMapLayout:
        return cls(
            float(doc["width"]),
            float(doc["height"]),
            tuple(_point(p) for p in doc.get("stage", [])),
        )
