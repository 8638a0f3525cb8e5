"""Put OCR lines in reading order: left to right, top to bottom, column by column.

A recursive XY-cut over the lines' boxes. At each level the lines are first split at a clear
vertical gutter into columns (read left to right), when that gutter separates blocks of several
lines each; otherwise they are split into rows at horizontal gaps (read top to bottom), and
words of one row left to right. A full-width title over two columns therefore comes first, then
the left column, then the right one: lines above the top of the columns' shared band are read
first, and a line below them that spans several columns is read last. A gutter between single
lines (a label and its value on one row) does not make columns, so that row reads left to right;
a table of several label/value rows does, and reads column by column.

Slightly rotated lines have tall axis-aligned boxes that overlap their neighbours; rows are cut
on each line's vertical core (its centre plus or minus a third of its own height) instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .records import OcrLine

# A column gutter must be at least this many median line heights wide.
GUTTER_LINE_HEIGHTS = 1.0
# Each side of a column cut must hold at least this many lines.
MIN_LINES_PER_COLUMN = 2


def _line_height(line: OcrLine) -> float:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = line.quad
    return (math.dist((x0, y0), (x3, y3)) + math.dist((x1, y1), (x2, y2))) / 2 or 1.0


def _y_core(line: OcrLine) -> tuple[float, float]:
    cy = sum(p[1] for p in line.quad) / 4
    half = _line_height(line) / 3
    return cy - half, cy + half


def _clusters(intervals: list[tuple[float, float]], min_gap: float) -> list[list[int]]:
    """Group indices whose intervals overlap or lie closer than ``min_gap``, in increasing order."""
    order = sorted(range(len(intervals)), key=lambda i: intervals[i][0])
    groups: list[list[int]] = []
    end = -math.inf
    for i in order:
        lo, hi = intervals[i]
        if groups and lo - end < min_gap:
            groups[-1].append(i)
            end = max(end, hi)
        else:
            groups.append([i])
            end = hi
    return groups


def _order(lines: list[OcrLine], gutter: float) -> list[OcrLine]:
    if len(lines) <= 1:
        return lines
    boxes = [ln.bbox() for ln in lines]
    columns = _clusters([(b[0], b[2]) for b in boxes], gutter)
    if len(columns) > 1 and sum(len(c) >= MIN_LINES_PER_COLUMN for c in columns) >= 2:
        cores = [_y_core(ln) for ln in lines]
        # Lines above the top of the shortest-reaching column are a heading over the columns
        # (or a column's first lines, which are read first either way): read them first.
        band_top = max(min(cores[i][0] for i in col) for col in columns)
        above = [i for i in range(len(lines)) if cores[i][1] < band_top]
        if above:
            rest = [i for i in range(len(lines)) if cores[i][1] >= band_top]
            return _order([lines[i] for i in above], gutter) + _order([lines[i] for i in rest], gutter)
        # Below the columns, only a line that spans several of them is a footer; a longer
        # column's last lines stay in their column.
        band_bottom = min(max(cores[i][1] for i in col) for col in columns)
        spans = [(min(boxes[i][0] for i in col), max(boxes[i][2] for i in col)) for col in columns]
        footer = [
            i
            for i in range(len(lines))
            if cores[i][0] > band_bottom
            and sum(boxes[i][0] < hi and boxes[i][2] > lo for lo, hi in spans) >= 2
        ]
        if footer:
            rest = [i for i in range(len(lines)) if i not in footer]
            return _order([lines[i] for i in rest], gutter) + _order([lines[i] for i in footer], gutter)
        return [ln for col in columns for ln in _order([lines[i] for i in col], gutter)]
    rows = _clusters([_y_core(ln) for ln in lines], 0.0)
    if len(rows) > 1:
        return [ln for row in rows for ln in _order([lines[i] for i in row], gutter)]
    # One row: left to right; boxes that overlap horizontally too keep a stable top-first order.
    return sorted(lines, key=lambda ln: (ln.bbox()[0], ln.bbox()[1]))


def reading_order(lines: Sequence[OcrLine]) -> list[OcrLine]:
    """Return ``lines`` sorted into reading order (see the module doc)."""
    lines = list(lines)
    if len(lines) <= 1:
        return lines
    heights = sorted(_line_height(ln) for ln in lines)
    gutter = GUTTER_LINE_HEIGHTS * heights[len(heights) // 2]
    return _order(lines, gutter)
