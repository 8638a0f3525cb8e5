"""Text lines in reading order: columns left to right, lines top to bottom, words of a row left to right.

One recursive XY-cut over the lines' boxes, for every stage that has lines with positions (the OCR
stage's detected lines, the PDF stage's text-layer lines). At each level:

1. **Columns**, when a vertical gutter at least a median line height wide splits the lines into
   blocks of several lines each (``MIN_COLUMN_LINES``): a gutter between single lines (a label and
   its value on one row) does not, so that row reads left to right; a table of several label/value
   rows does, and reads column by column. Lines above the top of the columns' shared band (a
   heading over a column, or a column's first lines) are read first; a line below the band that
   spans several columns (a footer) is read last; the rest column by column.
2. **Columns under spanning lines**, when no gutter runs through every line because a title or a
   footer crosses it: the wide lines (``WIDE_SHARE`` of the block's width or more) are set aside,
   and if the others fall into columns, the wide lines cut the page into bands read top to bottom,
   each band by its columns (a title above, a footer below, a full-width line between sections).
3. **Rows** otherwise, cut at horizontal gaps between the lines' vertical *cores* (centre plus or
   minus a third of the line's own height: slightly rotated lines have tall axis-aligned boxes that
   overlap their neighbours, their cores do not); a single row reads left to right.

>>> reading_order([(300, 0, 400, 10), (0, 0, 100, 10), (0, 20, 100, 30)], [10, 10, 10])
[1, 0, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]  # x0, y0, x1, y1; y grows downwards

# A column gutter must be at least this many median line heights wide ...
GUTTER_HEIGHTS = 1.0
# ... with at least this many lines on each of two sides.
MIN_COLUMN_LINES = 2
# A line this share of its block's width or wider may span a gutter (a title, a footer).
WIDE_SHARE = 0.6


def reading_order(boxes: Sequence[Box], heights: Sequence[float], centres: Sequence[float] | None = None) -> list[int]:
    """The indices of the lines in reading order (see the module docstring). ``heights``: each line's
    own height (for a tilted line, less than its box's); ``centres``: each line's vertical centre
    (default: its box's)."""
    count = len(boxes)
    if len(heights) != count or (centres is not None and len(centres) != count):
        raise ValueError(f"reading_order: {count} boxes, {len(heights)} heights"
                         + ("" if centres is None else f", {len(centres)} centres"))
    if count <= 1:
        return list(range(count))
    centres = centres if centres is not None else [(b[1] + b[3]) / 2 for b in boxes]
    cut = _Cut(list(boxes), [(c - h / 3, c + h / 3) for c, h in zip(centres, heights, strict=True)],
               GUTTER_HEIGHTS * sorted(heights)[count // 2])
    return cut.order(list(range(count)))


def _clusters(intervals: list[tuple[float, float]], min_gap: float) -> list[list[int]]:
    """Positions in ``intervals`` grouped where they overlap or lie closer than ``min_gap``, left to right."""
    order = sorted(range(len(intervals)), key=lambda i: intervals[i][0])
    groups: list[list[int]] = []
    end = float("-inf")
    for i in order:
        lo, hi = intervals[i]
        if groups and lo - end < min_gap:
            groups[-1].append(i)
            end = max(end, hi)
        else:
            groups.append([i])
            end = hi
    return groups


class _Cut:
    def __init__(self, boxes: list[Box], cores: list[tuple[float, float]], gutter: float):
        self.boxes, self.cores, self.gutter = boxes, cores, gutter

    def columns(self, ids: list[int]) -> list[list[int]] | None:
        """``ids`` split at vertical gutters, when two sides or more hold ``MIN_COLUMN_LINES`` lines."""
        groups = _clusters([(self.boxes[i][0], self.boxes[i][2]) for i in ids], self.gutter)
        if len(groups) > 1 and sum(len(g) >= MIN_COLUMN_LINES for g in groups) >= 2:
            return [[ids[j] for j in group] for group in groups]
        return None

    def order(self, ids: list[int]) -> list[int]:
        if len(ids) <= 1:
            return ids
        columns = self.columns(ids)
        if columns is not None:
            return self._by_columns(ids, columns)
        boxes = self.boxes
        width = max(boxes[i][2] for i in ids) - min(boxes[i][0] for i in ids)
        narrow = [i for i in ids if boxes[i][2] - boxes[i][0] < WIDE_SHARE * width]
        columns = self.columns(narrow) if len(narrow) < len(ids) else None
        if columns is not None:  # the wide lines cut the page into bands, top to bottom
            out: list[int] = []
            band: list[int] = []
            for i in sorted(ids, key=lambda i: boxes[i][1]):
                if boxes[i][2] - boxes[i][0] < WIDE_SHARE * width:
                    band.append(i)
                    continue
                out += self.order(band) + [i]
                band = []
            return out + self.order(band)
        rows = _clusters([self.cores[i] for i in ids], 0.0)
        if len(rows) > 1:
            return [i for row in rows for i in self.order([ids[j] for j in row])]
        # One row: left to right; boxes that overlap horizontally too keep a stable top-first order.
        return sorted(ids, key=lambda i: (boxes[i][0], boxes[i][1]))

    def _by_columns(self, ids: list[int], columns: list[list[int]]) -> list[int]:
        cores, boxes = self.cores, self.boxes
        # Above the top of the shortest-reaching column: a heading over the columns (or a column's
        # first lines, read first either way).
        band_top = max(min(cores[i][0] for i in col) for col in columns)
        above = [i for i in ids if cores[i][1] < band_top]
        if above:
            return self.order(above) + self.order([i for i in ids if cores[i][1] >= band_top])
        # Below the columns, only a line that spans several of them is a footer; a longer column's
        # last lines stay in their column.
        band_bottom = min(max(cores[i][1] for i in col) for col in columns)
        spans = [(min(boxes[i][0] for i in col), max(boxes[i][2] for i in col)) for col in columns]
        footer = [i for i in ids if cores[i][0] > band_bottom
                  and sum(boxes[i][0] < hi and boxes[i][2] > lo for lo, hi in spans) >= 2]
        if footer:
            return self.order([i for i in ids if i not in footer]) + self.order(footer)
        return [i for col in columns for i in self.order(col)]
