"""From a page's characters to text lines in reading order: columns, then lines, left to right.

pdfium returns the characters in content-stream order, which a producer chooses: a two-column
page may be drawn row by row across both columns. So lines are rebuilt from geometry: a character
continues the current line when it sits on the same baseline band and follows it closely; a jump
back, a jump to another band or a gap of more than a few character heights (a column gutter)
starts a new line. Spaces (the file's own, or pdfium's inserted ones) only separate words.

The lines are then put in reading order by the XY-cut every stage with positioned lines shares
(:mod:`pipelines.reading_order`): columns at a vertical gutter that splits the lines into blocks of
several lines each (lines that span the gutter, a title or a footer, stay where they are in the
flow: above, between or below the column blocks); otherwise rows at horizontal gaps, each read
left to right.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from pipelines.reading_order import reading_order as _indices

# A gap wider than this many line heights between two characters of a line splits it (a gutter).
SPLIT_GAP_HEIGHTS = 1.5


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


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """``lines`` in reading order: the shared XY-cut (:mod:`pipelines.reading_order`) over their boxes."""
    return [lines[i] for i in _indices([ln.box for ln in lines], [ln.height for ln in lines])]
