"""OCR filters. Each returns the kept lines or a reason, and the stage counts every reason.

Line-level: lines scored below ``min_line_score`` are dropped ("low_score" in ``lines_dropped``).
Image-level (the row stays in the corpus with its ``drop_reason``, so nothing is lost):

- ``undecodable_image``: the bytes are not an image Pillow can decode (set by the stage);
- ``no_text``: the engine found no line at all;
- ``low_score``: lines were found, but every one scored below ``min_line_score``;
- ``too_few_chars``: the kept lines hold fewer than ``min_chars`` non-space characters;
- ``too_many_lines``: more than ``max_lines`` kept lines (dense documents, texture noise);
- ``small_text_area``: the kept line boxes cover less than ``min_text_area`` of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .records import OcrLine, OcrResult

IMAGE_REASONS = (
    "undecodable_image",
    "no_text",
    "low_score",
    "too_few_chars",
    "too_many_lines",
    "small_text_area",
)


@dataclass(frozen=True)
class FilterOutcome:
    """What the filters made of one image: the kept lines, how many were dropped, and why not kept."""

    lines: list[OcrLine]
    low_score_lines: int
    text_area: float
    drop_reason: str | None


def quad_area(line: OcrLine) -> float:
    """Area of the line's quadrilateral in square pixels (shoelace formula)."""
    pts = np.asarray(line.quad, dtype=np.float64)
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def apply_filters(result: OcrResult, filters) -> FilterOutcome:
    """Apply ``filters`` (an :class:`ocr.settings.OcrFilterSettings`) to one engine result."""
    kept = [ln for ln in result.lines if ln.score >= filters.min_line_score and ln.text.strip()]
    low = sum(1 for ln in result.lines if ln.score < filters.min_line_score)
    image_area = max(1, result.width * result.height)
    area = min(1.0, sum(quad_area(ln) for ln in kept) / image_area)
    reason = None
    if not result.lines:
        reason = "no_text"
    elif not kept:
        reason = "low_score"
    elif sum(len("".join(ln.text.split())) for ln in kept) < filters.min_chars:
        reason = "too_few_chars"
    elif len(kept) > filters.max_lines:
        reason = "too_many_lines"
    elif area < filters.min_text_area:
        reason = "small_text_area"
    return FilterOutcome(kept, low, area, reason)
