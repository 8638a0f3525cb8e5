"""Annotation files beside a local image folder: COCO-style detection (Objects365) and GRIT JSONL.

Such a source is split into units of ``images_per_unit`` records (``<file stem>-<NNNNN>``), each
unit one task table, so a large annotation file resumes where a killed build stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from PIL import Image

from pipelines.storage import Storage
from pipelines.tasks.detection import (
    objects_texts_and_boxes,
    refs_texts_and_boxes,
    render_objects,
    render_refs,
)
from pipelines.tasks.draft import Draft
from pipelines.tasks.table import ImageRef

_MAGIC = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}


@dataclass(frozen=True, slots=True)
class LocalImage:
    ref: ImageRef
    image_format: str
    sha256: str
    width: int
    height: int


def local_image(storage: Storage, image_root: str, name: str, drops: Counter) -> LocalImage | None:
    """Locate, hash and size one image file; missing or non-JPEG/PNG files are counted out."""
    path = posixpath.join(image_root, name)
    try:
        with storage.fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        drops["image_missing"] += 1
        return None
    image_format = next((fmt for magic, fmt in _MAGIC.items() if data.startswith(magic)), None)
    if image_format is None:
        drops["image_format_other"] += 1
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except OSError:
        drops["image_undecodable"] += 1
        return None
    return LocalImage(
        ImageRef(path, 0, len(data)), image_format, hashlib.sha256(data).hexdigest(), width, height
    )


def coco_units(storage: Storage, annotation_file: str, images_per_unit: int) -> dict[str, list[dict]]:
    """``{unit: [image record with its "objects"], ...}`` from a COCO-style annotation file."""
    with storage.fs.open(annotation_file, "r", encoding="utf-8") as f:
        coco = json.load(f)
    names = {category["id"]: category["name"] for category in coco.get("categories", [])}
    objects: dict = {}
    for annotation in coco.get("annotations", []):
        if annotation.get("iscrowd"):
            continue  # crowd regions are not single objects
        name = names.get(annotation.get("category_id"), "")
        objects.setdefault(annotation["image_id"], []).append({"name": name, "bbox": annotation.get("bbox")})
    images = sorted(coco.get("images", []), key=lambda image: str(image["id"]))
    records = [{**image, "objects": objects.get(image["id"], [])} for image in images]
    return _chunk(annotation_file, records, images_per_unit)


def grit_units(storage: Storage, jsonl_file: str, images_per_unit: int) -> dict[str, list[dict]]:
    """``{unit: [record, ...]}`` from GRIT-style JSONL (``image``, ``caption``, ``ref_exps``)."""
    records = []
    with storage.fs.open(jsonl_file, "r", encoding="utf-8") as f:
        for line_number, line in enumerate(f):
            if line.strip():
                record = json.loads(line)
                record.setdefault("key", str(line_number))
                records.append(record)
    return _chunk(jsonl_file, records, images_per_unit)


def _chunk(path: str, records: list[dict], size: int) -> dict[str, list[dict]]:
    stem = posixpath.basename(path).split(".")[0]
    return {
        f"{stem}-{start // size:05d}": records[start : start + size] for start in range(0, len(records), size)
    }


def coco_drafts(
    storage: Storage, image_root: str, records: list[dict], max_objects: int, drops: Counter
) -> Iterator[Draft]:
    for record in records:
        image = local_image(storage, image_root, record["file_name"], drops)
        if image is None:
            continue
        # Boxes are in the annotated size, which is the file's unless the annotation says otherwise.
        width = float(record.get("width") or image.width)
        height = float(record.get("height") or image.height)
        texts, boxes = objects_texts_and_boxes(record["objects"], width, height, max_objects, drops)
        if not boxes:
            drops["no_objects"] += 1
            continue
        yield _draft(str(record["id"]), image, texts, partial(render_objects, boxes))


def grit_drafts(
    storage: Storage, image_root: str, records: list[dict], max_refs: int, drops: Counter
) -> Iterator[Draft]:
    for record in records:
        image = local_image(storage, image_root, record.get("image") or f"{record['key']}.jpg", drops)
        if image is None:
            continue
        ref_exps = record.get("ref_exps")
        texts, boxes = refs_texts_and_boxes(record.get("caption") or "", ref_exps or [], max_refs, drops)
        if not boxes:
            drops["no_objects"] += 1
            continue
        yield _draft(
            str(record["key"]), image, texts, partial(render_refs, boxes), str(record.get("url") or "")
        )


def _draft(key: str, image: LocalImage, texts, render, url: str = "") -> Draft:
    return Draft(
        key, image.ref, image.image_format, image.sha256, image.width, image.height, texts, render, url
    )
