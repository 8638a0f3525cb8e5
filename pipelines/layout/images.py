"""Every image a source holds becomes a :class:`~pipelines.layout.task_table.Picture`, in a format the shards carry.

JPEG, PNG and WebP are kept byte for byte (the trainer and InternVL's own loader read all three,
CMYK and progressive JPEGs and RGBA PNGs included). Any other format Pillow decodes (GIF, BMP,
TIFF, ICO, ...) is converted once, losslessly, to PNG (the first frame of an animation); the
converted bytes go into one file per unit beside the task tables,
``<root>/tasks/_images/<source>/<unit>.bin``, which the task tables reference by byte range like a
raw tar. An image that does not decode is counted out (``image_undecodable``), never a crash.

>>> images = UnitImages(storage, "coyo", "00003")  # doctest: +SKIP
>>> picture = images.picture(ImageRef(uri, offset, size), data, drops)  # doctest: +SKIP
>>> images.commit()  # before the unit's tables are written  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections import Counter

from PIL import Image

from pipelines.layout.task_table import TASKS_DIR, ImageRef, Picture
from pipelines.phash import hashes
from pipelines.storage import Storage

KEPT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
IMAGES_DIR = "_images"


def probe(data: bytes) -> tuple[str, int, int] | None:
    """(Pillow format name, width, height) from the header, or None if Pillow cannot read it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.format or "", image.width, image.height
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def to_png(data: bytes) -> bytes:
    """The image (its first frame) as a PNG, losslessly: palette, alpha and 16-bit modes kept."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        frame = image.copy()
    if frame.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        frame = frame.convert("RGBA" if "A" in frame.mode else "RGB")  # CMYK, YCbCr, F: to what PNG holds
    out = io.BytesIO()
    frame.save(out, format="PNG", optimize=False)
    return out.getvalue()


class UnitImages:
    """The pictures of one unit; converted images are buffered and written by :meth:`commit`."""

    reads_images = True  # callers hand :meth:`picture` the image's bytes

    def __init__(self, storage: Storage, source: str, unit: str, hash_images: bool = False):
        self.storage = storage
        self.hash_images = hash_images  # each picture's perceptual hash, from the bytes in hand
        self.path = storage.path(TASKS_DIR, IMAGES_DIR, source, f"{unit}.bin")
        self.uri = self.path[len(storage.root) + 1 :] if self.path.startswith(storage.root + "/") else self.path
        self._buffer = io.BytesIO()

    def picture(self, ref: ImageRef, data: bytes, drops: Counter,
                known: tuple[int, int] | None = None) -> Picture | None:
        """The picture of ``data`` (found at ``ref``): kept as it is, or converted to PNG; None if undecodable.
        ``known``: its hashes, when a stage that decoded it already computed them (the OCR actor)."""
        found = probe(data)
        if found is None:
            drops["image_undecodable"] += 1
            return None
        kind, width, height = found
        hashed = (known or hashes(data)) if self.hash_images else None
        if kind in KEPT:
            return Picture(ref, KEPT[kind], hashlib.sha256(data).hexdigest(), width, height, hashed)
        try:
            converted = to_png(data)
        except (OSError, ValueError):  # a header Pillow reads but a body it cannot
            drops["image_undecodable"] += 1
            return None
        offset = self._buffer.tell()
        self._buffer.write(converted)
        return Picture(ImageRef(self.uri, offset, len(converted)), "png",
                       hashlib.sha256(converted).hexdigest(), width, height, hashed)

    def commit(self) -> None:
        """Write the converted images, if any, before the tables that reference them."""
        if self._buffer.tell():
            self.storage.write_bytes(self.path, self._buffer.getvalue())


class NoPictures:
    """For passes that need a unit's texts only (the translation inputs): no image is read, every
    image stands as a placeholder, nothing is written."""

    reads_images = False

    def picture(self, ref: ImageRef, data: bytes, drops: Counter, known=None) -> Picture:
        return Picture(ref, "jpg", "", 1, 1)

    def commit(self) -> None:
        pass
