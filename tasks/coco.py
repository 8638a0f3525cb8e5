"""COCO-style detection files (Objects365 v2's several-GB ``zhiyuan_objv2_train.json``), read streaming.

The file is never loaded whole. One pass per top-level array with ``ijson`` (its C parser):

1. ``categories``: id -> name (a few hundred entries);
2. ``images``: written in runs of ``images_per_unit`` to one spill table per unit, and the image ids
   kept as two sorted integer arrays (id -> unit): 12 bytes per image, not per annotation
   (``bench/tasks/annotations.py`` measures it);
3. ``annotations``: looked up in batches and appended to their unit's spill parts.

The spill lives under ``<root>/tasks/_units/<source>/<file>-<hash>/``; its ``index.json`` is written
last, so a killed partition starts over and a finished one is reused by every rerun. A unit then
reads only its own spill files: peak memory follows ``images_per_unit``, not the file.
"""

from __future__ import annotations

import hashlib
import posixpath
from array import array
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from pipelines.storage import Storage
from tasks.units import spill_folder, unit_name

_BATCH = 20_000  # annotations looked up and spilled together (a few MB of parsed dicts)
_IMAGE_FIELDS = ("id", "file_name", "width", "height")


def _numeric_id(value) -> int:
    """COCO ids are integers; any other id is hashed to one (stable across runs)."""
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=7).digest(), "big")


def partition(storage: Storage, source: str, location: str, images_per_unit: int) -> dict:
    """Split one COCO file into unit spill files (or reuse a finished split); returns its index."""
    import ijson

    folder = spill_folder(storage, source, location)
    index_path = posixpath.join(folder, "index.json")
    size = storage.fs.size(location)
    if storage.exists(index_path):
        index = storage.read_json(index_path)
        if index.get("size") == size and index.get("images_per_unit") == images_per_unit:
            return index
    with storage.fs.open(location, "rb") as f:
        categories = {str(c["id"]): str(c.get("name") or "") for c in ijson.items(f, "categories.item")}
    ids = array("q")  # 8 bytes an image, not a Python int object each
    units: list[str] = []
    batch: list[dict] = []

    def flush_images() -> None:
        name = unit_name(location, len(units))
        table = pa.Table.from_pylist(batch, schema=pa.schema(
            [("id", pa.string()), ("numeric_id", pa.int64()), ("file_name", pa.string()),
             ("width", pa.float64()), ("height", pa.float64())]))
        storage.write_parquet(posixpath.join(folder, name, "images.parquet"), table)
        units.append(name)
        batch.clear()

    with storage.fs.open(location, "rb") as f:
        for image in ijson.items(f, "images.item", use_float=True):
            numeric = _numeric_id(image.get("id"))
            ids.append(numeric)
            batch.append({"id": str(image.get("id")), "numeric_id": numeric,
                          "file_name": str(image.get("file_name") or ""),
                          "width": image.get("width"), "height": image.get("height")})
            if len(batch) == images_per_unit:
                flush_images()
    if batch:
        flush_images()
    as_numpy = np.frombuffer(ids, dtype=np.int64) if len(ids) else np.zeros(0, dtype=np.int64)
    order = np.argsort(as_numpy, kind="stable")
    sorted_ids = as_numpy[order]
    unit_of = (order // images_per_unit).astype(np.int32)
    del as_numpy, ids, order  # what is held through the annotation pass: 12 bytes an image
    parts = 0
    with storage.fs.open(location, "rb") as f:
        pending: list[dict] = []
        for annotation in ijson.items(f, "annotations.item", use_float=True):
            pending.append(annotation)
            if len(pending) == _BATCH:
                _spill_annotations(storage, folder, units, sorted_ids, unit_of, categories, pending, parts)
                parts, pending = parts + 1, []
        if pending:
            _spill_annotations(storage, folder, units, sorted_ids, unit_of, categories, pending, parts)
    index = {"size": size, "images_per_unit": images_per_unit, "units": units}
    storage.write_json(index_path, index)
    return index


def _spill_annotations(storage, folder, units, sorted_ids, unit_of, categories, annotations, part) -> None:
    keys = np.asarray([_numeric_id(a.get("image_id")) for a in annotations], dtype=np.int64)
    slots = np.searchsorted(sorted_ids, keys)
    slots = np.minimum(slots, max(len(sorted_ids) - 1, 0))
    known = (sorted_ids[slots] == keys) if len(sorted_ids) else np.zeros(len(keys), dtype=bool)
    rows: dict[int, list[dict]] = {}
    for annotation, key, slot, ok in zip(annotations, keys.tolist(), slots.tolist(), known.tolist(), strict=True):
        bbox = annotation.get("bbox")
        rows.setdefault(int(unit_of[slot]) if ok else -1, []).append({
            "image_id": key, "name": categories.get(str(annotation.get("category_id")), ""),
            "bbox": [float(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else None,
            "iscrowd": bool(annotation.get("iscrowd")),
        })
    rows.pop(-1, None)  # annotations of images the file does not list: no image to put them on
    schema = pa.schema([("image_id", pa.int64()), ("name", pa.string()), ("bbox", pa.list_(pa.float64())),
                        ("iscrowd", pa.bool_())])
    for unit, unit_rows in rows.items():
        path = posixpath.join(folder, units[unit], f"annotations-{part:06d}.parquet")
        storage.write_parquet(path, pa.Table.from_pylist(unit_rows, schema=schema))


def unit_records(storage: Storage, source: str, location: str, unit: str) -> Iterator[dict]:
    """The image records of one unit, each with its non-crowd ``objects`` (``name``, ``bbox``), in file order."""
    folder = posixpath.join(spill_folder(storage, source, location), unit)
    images = storage.read_parquet(posixpath.join(folder, "images.parquet")).to_pylist()
    objects: dict[int, list[dict]] = {}
    for path in storage.glob(posixpath.join(folder, "annotations-*.parquet")):
        for row in storage.read_parquet(path).to_pylist():
            if not row["iscrowd"]:  # crowd regions are not single objects
                objects.setdefault(row["image_id"], []).append({"name": row["name"], "bbox": row["bbox"]})
    for image in images:
        yield {**image, "objects": objects.get(image["numeric_id"], [])}
