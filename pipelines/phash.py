"""The perceptual hashes of an image, computed where a stage first reads it (the task stage, the OCR
actor that decodes it, the PDF stage as it renders a page, when the run decontaminates) or, for tables
written without them, by the decontamination stage.

An image has two 64-bit hashes of its grey picture less its plain margins (:func:`trim`: an added
border moves a pHash by 12-16 bits, trimmed by 2-6), from one decode:

- **pHash** (imagehash): the sign of the 8x8 lowest frequencies of its DCT at 32x32. The index
  compares images whose pHashes are close (``decontam/keys.py``).
- **dHash** (imagehash): the sign of the 8x8 horizontal gradients at 9x8. It confirms a pHash match:
  two hashes of different construction, nearly independent on distinct pictures, so a false match
  must happen twice (decontam/README.md, "The hash", has the numbers).

JPEGs are decoded at reduced size (Pillow's draft mode: 1/2, 1/4 or 1/8, at least 64 pixels a side),
and any picture over twice the 64 pixels the hashes need is then reduced by a whole factor
(:func:`hashes_of`). A stage that decoded a JPEG in full (the OCR actor) passes :func:`draft_scale`
of the opened file, and the picture is first reduced by it as the draft decode would be, so it hashes
as its bytes do: measured on 220 JPEGs, the pHash 91% equal and 98% within 2 bits (ocr/README.md,
"Perceptual hashes"); without that step a 908x193 text line hashed 22 bits away. Task tables store
each hash as a signed 64-bit integer (:func:`to_signed`; the same bits).

>>> hashes(open("cat.jpg", "rb").read())  # doctest: +SKIP
(15781326578901234567, 1234567890123456789)
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from pipelines._imports import require

BITS = 64


SIDE = 64  # pixels on the shorter side the hashes need (pHash reads 32x32, dHash 9x8)


def hashes(data: bytes) -> tuple[int, int] | None:
    """The (pHash, dHash) of the image in ``data``, or None when it does not decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                image.draft("L", (SIDE, SIDE))  # JPEG: decode at 1/2..1/8 scale, never below SIDE px
                return hashes_of(image)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def phash(data: bytes) -> int | None:
    """The 64-bit pHash of the image in ``data`` (the first of :func:`hashes`), or None when it does not decode."""
    both = hashes(data)
    return None if both is None else both[0]


def draft_scale(image: Image.Image) -> int:
    """The power of two (1, 2, 4 or 8) by which :func:`hashes` decodes this opened, not yet loaded image
    (Pillow's draft mode keeps at least :data:`SIDE` pixels a side); 1 for formats it decodes in full."""
    from PIL.JpegImagePlugin import JpegImageFile

    if not isinstance(image, JpegImageFile) or len(image.tile) != 1:
        return 1
    fits = min(image.width // SIDE, image.height // SIDE)
    return next((scale for scale in (8, 4, 2) if fits >= scale), 1)


def hashes_of(image: Image.Image, scale: int = 1) -> tuple[int, int]:
    """The (pHash, dHash) of a decoded picture: grey, reduced by ``scale`` (:func:`draft_scale` of its file,
    for a picture decoded in full), then by a whole factor to near :data:`SIDE` pixels on its shorter side
    when it is over twice that, its margins trimmed."""
    imagehash = require("imagehash", "decontam")
    grey = image.convert("L")
    if scale > 1:
        grey = grey.reduce(scale)
    factor = min(grey.size) // SIDE
    if factor >= 2:
        grey = grey.reduce(factor)
    grey = trim(grey)
    return _bits(imagehash.phash(grey, hash_size=8)), _bits(imagehash.dhash(grey, hash_size=8))


def _bits(value) -> int:
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


def to_unsigned(value: int | None) -> int | None:
    """A hash read back from a Parquet int64 column (:func:`to_signed`) as its unsigned 64 bits."""
    return None if value is None else value & 0xFFFFFFFFFFFFFFFF
