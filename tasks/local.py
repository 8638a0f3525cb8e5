"""Annotation files beside an image folder: COCO-style detection (Objects365) and GRIT-style JSONL.

The files are read unit by unit (:mod:`tasks.coco`, :mod:`tasks.units`), so an
annotation file larger than memory builds as well as a small one, and a killed build resumes at
the unit where it stopped.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import partial

from pipelines.layout.task_table import ImageRef, Picture
from pipelines.storage import Storage
from tasks.detection import (
    objects_texts_and_boxes,
    refs_texts_and_boxes,
    render_objects,
    render_refs,
)
from tasks.draft import Draft


def local_image(storage: Storage, image_root: str, name: str, images, drops: Counter, strip: int = 0) -> Picture | None:
    """Read one image file below ``image_root`` as a :class:`Picture` (``images`` converts rare
    formats, :class:`pipelines.layout.images.UnitImages`); a missing or undecodable file is counted out.
    ``strip`` leading parts of ``name`` are dropped first (the source's ``image_path_strip``)."""
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or name.startswith("/") or ".." in parts or len(parts) <= strip:
        drops["image_path_invalid"] += 1
        return None
    path = posixpath.join(image_root, *parts[strip:])
    if not images.reads_images:
        return images.picture(ImageRef(path, 0, 0), b"", drops)
    try:
        with storage.fs.open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):
        drops["image_missing"] += 1
        return None
    return images.picture(ImageRef(path, 0, len(data)), data, drops)


def coco_drafts(
    storage: Storage, image_root: str, records: Iterable[dict], max_objects: int, images, drops: Counter,
    strip: int = 0,
) -> Iterator[Draft]:
    for record in records:
        picture = local_image(storage, image_root, record["file_name"], images, drops, strip)
        if picture is None:
            continue
        # Boxes are in the annotated size, which is the file's unless the annotation says otherwise.
        width = float(record.get("width") or picture.width)
        height = float(record.get("height") or picture.height)
        texts, boxes = objects_texts_and_boxes(record["objects"], width, height, max_objects, drops)
        if not boxes:
            drops["no_objects"] += 1
            continue
        yield Draft(str(record["id"]), [picture], texts, partial(render_objects, boxes))


def grit_drafts(
    storage: Storage, image_root: str, records: Iterable[tuple[int, dict]], max_refs: int, images, drops: Counter,
    strip: int = 0,
) -> Iterator[Draft]:
    """GRIT-style records (``image``, ``caption``, ``ref_exps``), keyed by ``key`` or their byte offset."""
    for offset, record in records:
        key = str(record.get("key") or record.get("id") or offset)
        picture = local_image(storage, image_root, record.get("image") or f"{key}.jpg", images, drops, strip)
        if picture is None:
            continue
        texts, boxes = refs_texts_and_boxes(record.get("caption") or "", record.get("ref_exps") or [],
                                            max_refs, drops)
        if not boxes:
            drops["no_objects"] += 1
            continue
        yield Draft(key, [picture], texts, partial(render_refs, boxes), str(record.get("url") or ""))
