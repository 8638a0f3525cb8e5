"""From a page's characters to text lines in reading order: columns, then lines, left to right.

pdfium returns the characters in content-stream order, which a producer chooses: a two-column
page may be drawn row by row across both columns. So lines are rebuilt from geometry: a character
continues the current line when it sits on the same baseline band and follows it closely; a jump
back, a jump to another band or a gap of more than a few character heights (a column gutter)
starts a new line. Spaces (the file's own, or pdfium's inserted ones) only separate words.

The lines are then put in reading order by a recursive XY-cut: a vertical gutter that splits the
lines into columns of several lines each is cut first (lines that span the gutter, a title or a
footer, stay where they are in the flow: above, between or below the column blocks); otherwise
the lines are cut into rows at horizontal gaps and a row reads left to right.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# A gap wider than this many line heights between two characters of a line splits it (a gutter).
SPLIT_GAP_HEIGHTS = 1.5
# A column gutter must be at least this many median line heights wide ...
GUTTER_HEIGHTS = 1.0
# ... with at least this many lines on each side.
MIN_COLUMN_LINES = 2


@dataclass
class TextLine:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the rendered page

    @property
    def height(self) -> float:
        return max(1.0, self.box[3] - self.box[1])


# Separators, never text: white space (all of it lies below U+3001), control characters.
_SPACES = frozenset(c for c in range(0x3001) if unicodedata.category(chr(c)) in ("Zs", "Cc")) | {9, 10, 13, 32, 0xA0, 0x3000}


def _is_space(code: int) -> bool:
    return code in _SPACES


def page_lines(codes, boxes, generated, hidden=None) -> list[TextLine]:
    """The visible characters grouped into lines (unordered). ``hidden[i]``: leave character i out."""
    lines: list[TextLine] = []
    chars: list[str] = []
    bx0 = by0 = bx1 = by1 = 0.0  # the current line's box, when ``chars``
    space = False
    for i, code in enumerate(codes):
        if hidden is not None and hidden[i]:
            continue
        x0, y0, x1, y1 = boxes[i]
        if code in _SPACES or generated[i] or x1 <= x0 or y1 <= y0:
            # A space, or pdfium's line break (a space unless the geometry says new line).
            if chars or (code in (10, 13) and generated[i]):
                space = True
            continue
        if chars:
            height = max(1.0, by1 - by0, y1 - y0)
            same_band = by0 <= (y0 + y1) / 2 <= by1 or y0 <= (by0 + by1) / 2 <= y1
            if not same_band or x0 - bx1 > SPLIT_GAP_HEIGHTS * height or x0 < bx1 - 0.5 * height:
                _flush(lines, chars, bx0, by0, bx1, by1)
                chars = []
        if not chars:
            bx0, by0, bx1, by1 = x0, y0, x1, y1
        else:
            if space:
                chars.append(" ")
            bx0, by0 = (x0 if x0 < bx0 else bx0), (y0 if y0 < by0 else by0)
            bx1, by1 = (x1 if x1 > bx1 else bx1), (y1 if y1 > by1 else by1)
        chars.append(chr(code))
        space = False
    if chars:
        _flush(lines, chars, bx0, by0, bx1, by1)
    return lines


def _flush(lines: list[TextLine], chars: list[str], x0: float, y0: float, x1: float, y1: float) -> None:
    text = "".join(chars).strip()
    if text:
        lines.append(TextLine(" ".join(text.split()), (x0, y0, x1, y1)))


def _clusters(intervals: list[tuple[float, float]], min_gap: float) -> list[list[int]]:
    """Indices grouped where intervals overlap or lie closer than ``min_gap``, in increasing order."""
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


def _core(line: TextLine) -> tuple[float, float]:
    centre = (line.box[1] + line.box[3]) / 2
    return centre - line.height / 3, centre + line.height / 3


def _columns(lines: list[TextLine], gutter: float) -> tuple[list[list[int]], list[int]] | None:
    """A cut into columns of lines (``MIN_COLUMN_LINES`` each at least), and the lines spanning it."""
    width = max(ln.box[2] for ln in lines) - min(ln.box[0] for ln in lines)
    for limit in (float("inf"), 0.6 * width):  # all lines, then without the wide ones (titles, footers)
        narrow = [i for i, ln in enumerate(lines) if ln.box[2] - ln.box[0] < limit]
        groups = _clusters([(lines[i].box[0], lines[i].box[2]) for i in narrow], gutter)
        if len(groups) > 1 and sum(len(g) >= MIN_COLUMN_LINES for g in groups) >= 2:
            columns = [[narrow[i] for i in g] for g in groups]
            inside = {i for col in columns for i in col}
            return columns, [i for i in range(len(lines)) if i not in inside]
    return None


def _order(lines: list[TextLine], gutter: float) -> list[TextLine]:
    if len(lines) <= 1:
        return lines
    cut = _columns(lines, gutter)
    if cut is not None:
        columns, spanning = cut
        if not spanning:
            return [ln for col in columns for ln in _order([lines[i] for i in col], gutter)]
        # The spanning lines split the page into bands, read top to bottom; each band by columns.
        out: list[TextLine] = []
        rest = sorted(range(len(lines)), key=lambda i: lines[i].box[1])
        band: list[int] = []
        for i in rest:
            if i in spanning:
                out += _order([lines[j] for j in band], gutter) if band else []
                out.append(lines[i])
                band = []
            else:
                band.append(i)
        return out + (_order([lines[j] for j in band], gutter) if band else [])
    rows = _clusters([_core(ln) for ln in lines], 0.0)
    if len(rows) > 1:
        return [ln for row in rows for ln in _order([lines[i] for i in row], gutter)]
    return sorted(lines, key=lambda ln: (ln.box[0], ln.box[1]))


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """``lines`` in reading order (see the module docstring)."""
    if len(lines) <= 1:
        return list(lines)
    heights = sorted(ln.height for ln in lines)
    return _order(list(lines), GUTTER_HEIGHTS * heights[len(heights) // 2])
