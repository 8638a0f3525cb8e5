"""Filters on a URL list's own columns (LAION's punsafe, pwatermark, listed size, caption, language).

They run before any download, on Arrow tables, and say why each row went: a row dropped by
several filters is counted once, under the first reason in ``REASONS`` order.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.source import Columns, UrlFilters

REASONS = (
    "missing_url",
    "unsafe",
    "watermarked",
    "too_narrow",
    "too_short",
    "caption_too_short",
    "caption_too_long",
    "language_not_kept",
)


class MissingColumn(KeyError):
    """A filter reads a column the URL list does not have."""


def _column(table: pa.Table, name: str, purpose: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise MissingColumn(f"column {name!r} (for {purpose}) is not in the URL list; it has {table.column_names}")
    return table[name]


def _drop_masks(table: pa.Table, columns: Columns, filters: UrlFilters) -> dict[str, pa.ChunkedArray]:
    """For each reason, a boolean array: True where the row fails that test (null counts as failing)."""
    url = _column(table, columns.url, "the image URL")
    masks = {"missing_url": pc.or_kleene(pc.is_null(url), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(url)), 0))}

    def above(column: str, limit: float, purpose: str):
        return pc.fill_null(pc.greater(_column(table, column, purpose), limit), True)

    def below(column: str, limit: float, purpose: str):
        return pc.fill_null(pc.less(_column(table, column, purpose), limit), True)

    if filters.max_punsafe is not None:
        masks["unsafe"] = above(columns.punsafe, filters.max_punsafe, "max_punsafe")
    if filters.max_pwatermark is not None:
        masks["watermarked"] = above(columns.pwatermark, filters.max_pwatermark, "max_pwatermark")
    if filters.min_width is not None:
        masks["too_narrow"] = below(columns.width, filters.min_width, "min_width")
    if filters.min_height is not None:
        masks["too_short"] = below(columns.height, filters.min_height, "min_height")
    if filters.min_caption_chars is not None or filters.max_caption_chars is not None:
        caption = _column(table, columns.caption, "caption length")
        length = pc.fill_null(pc.utf8_length(pc.utf8_trim_whitespace(caption)), 0)
        if filters.min_caption_chars is not None:
            masks["caption_too_short"] = pc.less(length, filters.min_caption_chars)
        if filters.max_caption_chars is not None:
            masks["caption_too_long"] = pc.greater(length, filters.max_caption_chars)
    if filters.languages is not None:
        tags = _column(table, columns.language, "languages")
        masks["language_not_kept"] = pc.invert(pc.fill_null(pc.is_in(tags, pa.array(filters.languages)), False))
    return masks


def filter_url_list(table: pa.Table, columns: Columns, filters: UrlFilters) -> tuple[pa.Table, Counter]:
    """Return the kept rows (order preserved) and the number of dropped rows per reason."""
    masks = _drop_masks(table, columns, filters)
    dropped_so_far = pa.chunked_array([pa.array([False] * len(table))]) if len(table) else None
    counts: Counter = Counter()
    if dropped_so_far is None:
        return table, counts
    for reason in REASONS:
        if reason not in masks:
            continue
        newly = pc.and_(masks[reason], pc.invert(dropped_so_far))
        n = pc.sum(newly).as_py() or 0
        if n:
            counts[reason] = n
        dropped_so_far = pc.or_(dropped_so_far, masks[reason])
    return table.filter(pc.invert(dropped_so_far)), counts
