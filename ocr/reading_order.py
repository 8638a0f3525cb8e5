"""Put OCR lines in reading order: left to right, top to bottom, column by column.

The XY-cut every stage with positioned lines shares (:mod:`pipelines.reading_order`: columns at clear
gutters, a heading over them first and a footer under them last, titles and footers that span the
gutter in their place, rows cut on each line's vertical core), over each OCR line's axis-aligned box,
its own height (the mean of its quadrilateral's left and right edges: a tilted line's box is taller)
and its centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipelines.reading_order import reading_order as _indices

from .records import OcrLine


def _line_height(line: OcrLine) -> float:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = line.quad
    return (math.dist((x0, y0), (x3, y3)) + math.dist((x1, y1), (x2, y2))) / 2 or 1.0


def reading_order(lines: Sequence[OcrLine]) -> list[OcrLine]:
    """Return ``lines`` sorted into reading order (see the module doc)."""
    lines = list(lines)
    order = _indices([ln.bbox() for ln in lines], [_line_height(ln) for ln in lines],
                     [sum(p[1] for p in ln.quad) / 4 for ln in lines])
    return [lines[i] for i in order]
