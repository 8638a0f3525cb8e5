"""The image an item names, as a :class:`Picture`: a file below ``image_root`` (or the first of several
candidates that exists) or bytes embedded in the record (a Hub image struct ``{bytes, path}``).

Embedded bytes have no byte range in a file the shards can point at (Parquet pages are compressed), so
they are written once per unit to ``<root>/tasks/_images/<source>/<unit>.embedded.bin`` and referenced
by range, the way converted images are (:mod:`pipelines.layout.images`).
"""

from __future__ import annotations

import io
import posixpath
from collections import Counter
from typing import Any

from pipelines.layout.images import IMAGES_DIR
from pipelines.layout.task_table import TASKS_DIR, ImageRef, Picture
from pipelines.storage import Storage
from tasks.local import local_image


class EmbeddedImages:
    """Buffers a unit's embedded image bytes; :meth:`commit` writes them (before the unit's tables)."""

    def __init__(self, storage: Storage, source: str, unit: str):
        self.storage = storage
        self.path = storage.path(TASKS_DIR, IMAGES_DIR, source, f"{unit}.embedded.bin")
        self.uri = self.path[len(storage.root) + 1:] if self.path.startswith(storage.root + "/") else self.path
        self.buffer = io.BytesIO()

    def picture(self, data: bytes, images, drops: Counter) -> Picture | None:
        if not images.reads_images:
            return images.picture(ImageRef(self.uri, 0, len(data)), b"", drops)
        offset = self.buffer.tell()
        self.buffer.write(data)
        return images.picture(ImageRef(self.uri, offset, len(data)), data, drops)

    def commit(self) -> None:
        if self.buffer.tell():
            self.storage.write_bytes(self.path, self.buffer.getvalue())


def item_pictures(storage: Storage, image_root: str | None, strip: int, image: Any, images, embedded: EmbeddedImages,
                  drops: Counter) -> list[Picture] | None:
    """The pictures of an item's ``image`` (None if one is missing or broken: counted)."""
    if image is None:
        return []
    if isinstance(image, dict):
        data = image.get("bytes")
        if isinstance(data, bytes | bytearray) and data:
            picture = embedded.picture(bytes(data), images, drops)
            return None if picture is None else [picture]
        image = image.get("path")
        if not image:
            drops["image_missing"] += 1
            return None
    if isinstance(image, list):
        if all(isinstance(name, str) for name in image) and len(image) > 1 and image_root is not None:
            image = _first_existing(storage, image_root, strip, image)
        else:
            drops["image_path_invalid"] += 1
            return None
    if not isinstance(image, str) or not image:
        drops["image_path_invalid"] += 1
        return None
    if image_root is None:
        drops["image_root_missing"] += 1
        return None
    picture = local_image(storage, image_root, image, images, drops, strip)
    return None if picture is None else [picture]


def _first_existing(storage: Storage, image_root: str, strip: int, names: list[str]) -> str:
    for name in names:
        parts = name.split("/")[strip:]
        if parts and storage.exists(posixpath.join(image_root, *parts)):
            return name
    return names[0]  # none exists: read as the first, counted `image_missing`
