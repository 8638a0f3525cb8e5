"""The perceptual hash of an image, computed where a stage first reads its bytes (the task stage, when
the run decontaminates) or, for tables written without it, by the decontamination stage.

A hash is imagehash's pHash (the sign of the 8x8 lowest frequencies of the image's DCT at 32x32,
grey) of the image less its plain margins (:func:`trim`: an added border moves a pHash by 12-16
bits, trimmed by 2-6), a 64-bit integer. JPEGs are decoded at reduced size (Pillow's draft mode:
the hash only looks at 32x32 pixels), so hashing costs a fraction of a full decode. Task tables
store it as a signed 64-bit integer (:func:`to_signed`; the same bits).

>>> phash(open("cat.jpg", "rb").read())  # doctest: +SKIP
15781326578901234567
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from pipelines._imports import require

BITS = 64


def phash(data: bytes) -> int | None:
    """The 64-bit pHash of the image in ``data``, or None when it does not decode."""
    imagehash = require("imagehash", "decontam")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                image.draft("L", (64, 64))  # JPEG: decode at 1/2..1/8 scale, never below 64 px
                value = imagehash.phash(trim(image.convert("L")), hash_size=8)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None
    return int.from_bytes(np.packbits(value.hash.flatten()).tobytes(), "big")


def trim(image: Image.Image, tolerance: int = 12) -> Image.Image:
    """The image less its uniform margins (an added border, then any plain background it framed): rows and
    columns, from each edge inwards, whose pixels (all but 5%) lie within ``tolerance`` grey levels of
    their median. Kept whole when that would leave under a quarter of it (a plain or nearly plain image)."""
    pixels = np.asarray(image, dtype=np.int16)
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        return image
    top, left, bottom, right = 0, 0, pixels.shape[0], pixels.shape[1]
    for _ in range(4):  # a border, then the background it framed: peel until nothing changes
        inner = pixels[top:bottom, left:right]
        rows = np.flatnonzero(_busy(inner, 1, tolerance))
        cols = np.flatnonzero(_busy(inner, 0, tolerance))
        if not len(rows) or not len(cols):
            return image
        box = (top + rows[0], left + cols[0], top + rows[-1] + 1, left + cols[-1] + 1)
        if box == (top, left, bottom, right):
            break
        top, left, bottom, right = (int(v) for v in box)
    if (bottom - top) * (right - left) < pixels.size / 4:
        return image
    return image.crop((left, top, right, bottom))


def _busy(pixels: np.ndarray, axis: int, tolerance: int) -> np.ndarray:
    """Lines (rows: axis 1) with more than 5% of pixels off their median by over ``tolerance``: not margin.
    The 5% lets through the blurred corners where a border meets a framed background."""
    median = np.median(pixels, axis=axis, keepdims=True)
    return (np.abs(pixels - median) > tolerance).mean(axis=axis) > 0.05


def to_signed(value: int | None) -> int | None:
    """A 64-bit hash as the int64 a Parquet column holds (the same bits)."""
    return None if value is None else value - (1 << 64) if value >= 1 << 63 else value

