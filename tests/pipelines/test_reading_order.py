"""The reading order the OCR and PDF stages share: boxes of lines laid out as on real pages."""

from __future__ import annotations

import pytest

from pipelines.reading_order import reading_order


def line(x: float, y: float, w: float = 200, h: float = 20) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def test_a_title_and_a_footer_across_two_columns_keep_their_places():
    title = line(40, 10, w=700)  # crosses the gutter: no gutter runs through every line
    left = [line(40, 100 + 40 * i) for i in range(3)]
    right = [line(540, 100 + 40 * i) for i in range(3)]
    middle = line(40, 240, w=700)  # a full-width line between two sections of columns
    lower = [line(40, 300 + 40 * i) for i in range(2)] + [line(540, 300 + 40 * i) for i in range(2)]
    footer = line(40, 420, w=650)
    boxes = [right[2], footer, left[1], lower[3], title, right[0], middle, left[0], lower[0], right[1],
             left[2], lower[2], lower[1]]
    names = ["R2", "footer", "L1", "r1", "title", "R0", "middle", "L0", "l0", "R1", "L2", "r0", "l1"]
    order = reading_order(boxes, [20] * len(boxes))
    assert [names[i] for i in order] == ["title", "L0", "L1", "L2", "R0", "R1", "R2", "middle",
                                         "l0", "l1", "r0", "r1", "footer"]


def test_rows_read_left_to_right_when_no_gutter_has_lines_on_both_sides():
    boxes = [line(600, 102, w=50), line(40, 100, w=100), line(40, 160, w=100)]  # "$5", "Price", "Open"
    assert reading_order(boxes, [20, 20, 20]) == [1, 0, 2]


def test_tilted_lines_are_cut_on_their_cores_not_their_boxes():
    # Each line rises 45 px over its length: its box is 73 px tall, its own height 28; boxes overlap.
    boxes = [(30, 50 + 40 * i, 830, 50 + 40 * i + 73) for i in range(4)][::-1]
    centres = [(b[1] + b[3]) / 2 for b in boxes]
    assert reading_order(boxes, [28] * 4, centres) == [3, 2, 1, 0]


def test_mismatched_lengths_are_named():
    with pytest.raises(ValueError, match="2 boxes, 1 heights"):
        reading_order([line(0, 0), line(0, 40)], [20])
