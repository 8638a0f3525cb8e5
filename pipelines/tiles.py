"""How many 448x448 tiles an image of a given size becomes (SPEC §3, dynamic high resolution).

The grid planning of the InternVL trainer, kept in the foundation so every stage that needs a
sample's tile count (the InternVL export's ``length``, the trainer's batching) plans it the one
way. :mod:`trainer.tiling` cuts the tiles.
"""

from functools import lru_cache


@lru_cache(maxsize=64)
def candidate_grids(min_tiles: int = 1, max_tiles: int = 12) -> tuple[tuple[int, int], ...]:
    """Every ``(cols, rows)`` with ``min_tiles <= cols * rows <= max_tiles``, in visiting order.

    The order is by tile count, then by ``cols``; it only matters for exact ties (see
    :func:`plan_grid`). There are 35 grids for 1..12 tiles and 158 for 1..40.

    >>> len(candidate_grids(1, 12)), len(candidate_grids(1, 40))
    (35, 158)
    """
    if not 1 <= min_tiles <= max_tiles:
        raise ValueError(
            f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}"
        )
    grids = [(c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1)]
    return tuple(
        sorted((g for g in grids if min_tiles <= g[0] * g[1] <= max_tiles), key=lambda g: (g[0] * g[1], g[0]))
    )


def plan_grid(
    width: int, height: int, min_tiles: int = 1, max_tiles: int = 12, tile_size: int = 448
) -> tuple[int, int]:
    """The tile grid ``(cols, rows)`` for an image of ``width`` x ``height`` pixels.

    The grid whose ``cols / rows`` is closest to ``width / height`` wins. Candidates are visited
    by increasing tile count; on an exact tie the later (larger) grid wins only when the image
    covers more than half of the grid's pixels, so small images are not blown up.

    Differences are float64 ``abs(width / height - cols / rows)``, computed as the public InternVL
    code computes them, so both agree on every size, including the few exact ties that rounding
    breaks (7x12 lies exactly between 1x2 and 2x3; in floats 2x3 is nearer).

    >>> plan_grid(800, 1300)  # the report's example: 896x1344, 6 tiles + thumbnail
    (2, 3)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    aspect = width / height
    best, best_diff = None, float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile_size * tile_size * cols * rows:
            best = (cols, rows)
    assert best is not None  # candidate_grids is never empty
    return best


def tile_count(
    width: int, height: int, min_tiles: int = 1, max_tiles: int = 12, use_thumbnail: bool = True
) -> int:
    """How many 448x448 images (tiles plus thumbnail) :func:`tile_image` makes for this size."""
    cols, rows = plan_grid(width, height, min_tiles, max_tiles)
    n = cols * rows
    return n + 1 if use_thumbnail and n > 1 else n
