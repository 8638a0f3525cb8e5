"""Text regions as OCR lines: polygons checked and normalised, illegible ones left out, reading order.

A region's polygon comes as ``[[x, y], ...]`` or flat ``[x1, y1, x2, y2, ...]`` (at least three points),
or as a box ``[x, y, w, h]``. A quadrilateral is kept as it is; a longer polygon (ArT's curved text,
COCO-Text's masks) is written as the corners of its axis-aligned bounding box. Lines are put in
reading order: rows top to bottom (regions whose vertical extents overlap by half the smaller height
share a row), left to right within a row.

>>> quad_of([[0, 0], [10, 0], [10, 5], [0, 5]])
[(0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (0.0, 5.0)]
>>> quad_of([1, 2, 3]) is None
True
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from tasks.published.mapping import Region

Quad = list[tuple[float, float]]


@dataclass
class Line:
    text: str
    quad: Quad

    @property
    def top(self) -> float:
        return min(y for _, y in self.quad)

    @property
    def bottom(self) -> float:
        return max(y for _, y in self.quad)

    @property
    def left(self) -> float:
        return min(x for x, _ in self.quad)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def quad_of(points) -> Quad | None:
    """Four corners of a polygon, or None if it is malformed (too few points, not numbers, no area)."""
    if not isinstance(points, list | tuple) or not points:
        return None
    if all(isinstance(p, list | tuple) for p in points):
        if any(len(p) != 2 for p in points):
            return None
        flat = [c for p in points for c in p]
    else:
        flat = list(points)
    numbers = [_number(v) for v in flat]
    if any(n is None for n in numbers) or len(numbers) % 2 or len(numbers) < 6:
        return None
    pairs = list(zip(numbers[0::2], numbers[1::2], strict=True))
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
        return None
    if len(pairs) == 4:
        return pairs
    return [(min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys))]


def quad_of_box(box) -> Quad | None:
    """``[x, y, w, h]`` as four corners, or None."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        return None
    x, y, w, h = (_number(v) for v in box)
    if None in (x, y, w, h) or w <= 0 or h <= 0:
        return None
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def legible_lines(regions: list[Region], drops: Counter) -> list[Line]:
    """The legible, well-formed regions as lines in reading order; the rest counted
    (``object:illegible_region``, ``object:malformed_polygon``)."""
    lines = []
    for region in regions:
        if region.illegible:
            drops["object:illegible_region"] += 1
            continue
        quad = quad_of(region.points) if region.points is not None else None
        if quad is None and region.box is not None:
            quad = quad_of_box(region.box)
        if quad is None:
            drops["object:malformed_polygon"] += 1
            continue
        lines.append(Line(region.text, quad))
    return reading_order(lines)


def reading_order(lines: list[Line]) -> list[Line]:
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.top, ln.left)):
        row = rows[-1] if rows else None
        if row is not None:
            top, bottom = min(ln.top for ln in row), max(ln.bottom for ln in row)
            overlap = min(bottom, line.bottom) - max(top, line.top)
            if overlap >= 0.5 * min(bottom - top, line.bottom - line.top):
                row.append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln.left)]
