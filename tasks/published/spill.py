"""JSON annotation files of any size, cut into units in one streaming pass (never read whole).

A JSON file holds its records as an array (``[...]``, ``{"data": [...]}``) or as an object keyed by id
(LSVT's ``{"gt_0": [...], ...}``, COCO-Text's ``imgs``); which one is found from the file. ``ijson``
streams the records into per-unit JSON Lines part files under ``<root>/tasks/_units/<source>/<file>-<hash>/``
(``{"k": key, "v": record}`` a line), ``images_per_unit`` records a unit, one Ray task per file when
Ray is up; its ``index.json`` is written last, so a killed split starts over and a finished one is
reused (keyed by the file's size and the format's reading fields).

- ``group_by``: the records are counted first, then each goes to the unit its group's hash names, so the
  questions of one document are never split between units.
- ``lookups`` (VisualDialog): records that point by index into lists elsewhere in the same file; the
  lists are read first (one streaming pass each, held by the task that splits the file), then each
  index is replaced by its item as the records are spilled, so a unit's records are whole.
- ``annotations`` (COCO-like files): a second collection joined to the records by ``link``; its items
  are spilled beside their record's unit (the driver holds one id -> unit entry per record) and put
  read as the record's ``$annotations`` (a list) when the unit is read.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from typing import Any

from pipelines.storage import Storage
from tasks.published.mapping import Format
from tasks.published.paths import resolve
from tasks.units import file_stem, spill_folder, unit_name

_BATCH = 20_000  # records buffered across units before their part files are written
ANNOTATIONS = "$annotations"


def _collection(storage: Storage, location: str, prefix: str) -> Iterator[tuple[str | None, Any]]:
    """``(key, item)`` of the array (key None) or object found at ``prefix``; ValueError naming the file
    if it is no JSON (truncated, another format) or holds no collection there."""
    import ijson

    try:
        with storage.fs.open(location, "rb") as f:
            container = None
            for path, event, _ in ijson.parse(f):
                if path == prefix and event in ("start_map", "start_array"):
                    container = event
                    break
        if container is None:
            raise ValueError(f"{location}: no array or object at {prefix or 'the top level'!r} "
                             "(format `records`/`annotations`)")
        with storage.fs.open(location, "rb") as f:
            if container == "start_array":
                for item in ijson.items(f, f"{prefix}.item" if prefix else "item", use_float=True):
                    yield None, item
            else:
                yield from ijson.kvitems(f, prefix, use_float=True)
    except ijson.JSONError as err:
        raise ValueError(f"{location}: not valid JSON ({err})") from None


def _reading_fields(fmt: Format) -> dict:
    return {"records": fmt.records, "annotations": fmt.annotations, "link": fmt.link, "record_id": fmt.record_id,
            "group_by": fmt.group_by, "annotations_file": fmt.annotations_file, "lookups": fmt.lookups}


def _tables(storage: Storage, location: str, fmt: Format) -> dict[str, list]:
    """The lists ``lookups`` point into, each read once (ValueError naming the file if one is no list)."""
    tables: dict[str, list] = {}
    for prefix in dict.fromkeys(fmt.lookups.values()):
        items = list(_collection(storage, location, prefix))
        if items and items[0][0] is not None:
            raise ValueError(f"{location}: {prefix!r} is an object, not a list (format `lookups` needs a list)")
        tables[prefix] = [item for _, item in items]
    return tables


def _looked_up(value: Any, parts: list[str], table: list) -> Any:
    """``value`` with the index at ``parts`` (``*``: every element of a list) replaced by ``table``'s item."""
    if not parts:
        whole = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
        return table[int(value)] if whole and 0 <= int(value) < len(table) else None
    head, rest = parts[0], parts[1:]
    if head == "*":
        return [_looked_up(v, rest, table) for v in value] if isinstance(value, list) else value
    if isinstance(value, dict) and head in value:
        return {**value, head: _looked_up(value[head], rest, table)}
    return value


def _bucket(value: Any, buckets: int) -> int:
    digest = hashlib.blake2b(json.dumps(value, sort_keys=True, default=str).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


class _Parts:
    """Per-unit buffers of JSON lines, written as numbered part files (object stores cannot append)."""

    def __init__(self, storage: Storage, folder: str, stem: str):
        self.storage, self.folder, self.stem = storage, folder, stem
        self.buffers: dict[int, list[str]] = {}
        self.pending = self.part = 0

    def add(self, unit: int, line: dict) -> None:
        self.buffers.setdefault(unit, []).append(json.dumps(line, ensure_ascii=False))
        self.pending += 1
        if self.pending >= _BATCH:
            self.flush()

    def flush(self) -> None:
        for unit, lines in self.buffers.items():
            path = posixpath.join(self.folder, f"{unit:05d}", f"{self.stem}-{self.part:06d}.jsonl")
            self.storage.write_bytes(path, ("\n".join(lines) + "\n").encode())
        self.buffers, self.pending, self.part = {}, 0, self.part + 1


def partition(storage: Storage, source: str, location: str, fmt: Format, per_unit: int) -> list[str]:
    """Split one JSON file into units (or reuse a finished split); returns the unit names."""
    folder = spill_folder(storage, source, location)
    index_path = posixpath.join(folder, "index.json")
    size = storage.fs.size(location)
    fields = _reading_fields(fmt)
    if storage.exists(index_path):
        index = storage.read_json(index_path)
        if index.get("size") == size and index.get("per_unit") == per_unit and index.get("fields") == fields:
            return index["units"]
        storage.fs.rm(folder, recursive=True)
    records = _Parts(storage, folder, "records")
    ids: dict[str, int] = {}
    if fmt.group_by:
        count = sum(1 for _ in _collection(storage, location, fmt.records))
        buckets = max(1, -(-count // per_unit))
    else:
        buckets, count = 0, 0
    stem = file_stem(location)
    tables = _tables(storage, location, fmt) if fmt.lookups else {}
    for ordinal, (key, value) in enumerate(_collection(storage, location, fmt.records)):
        for path, prefix in fmt.lookups.items():
            value = _looked_up(value, path.split("."), tables[prefix])
        extras = {"$key": key if key is not None else f"{stem}-{ordinal}"}  # an array's: file and position
        if fmt.group_by:
            unit = _bucket(resolve(value, fmt.group_by, extras, None), buckets)
        else:
            unit, count = ordinal // per_unit, ordinal + 1
        if fmt.annotations is not None:
            ids[str(resolve(value, fmt.record_id, extras, None))] = unit
        records.add(unit, {"k": extras["$key"], "v": value})
    records.flush()
    if fmt.annotations is not None:
        annotations = _Parts(storage, folder, "annotations")
        beside = posixpath.join(posixpath.dirname(location), fmt.annotations_file) if fmt.annotations_file else location
        for key, value in _collection(storage, beside, fmt.annotations):
            unit = ids.get(str(resolve(value, fmt.link, None, None)))
            if unit is not None:  # an annotation of a record the file does not list has no image
                annotations.add(unit, {"k": key, "v": value})
        annotations.flush()
    units = [unit_name(location, i) for i in range(buckets if fmt.group_by else -(-count // per_unit))]
    # A bucket no group hashed to has no folder: it reads as an empty unit.
    storage.write_json(index_path, {"size": size, "per_unit": per_unit, "fields": fields, "units": units})
    return units


def unit_records(storage: Storage, source: str, location: str, fmt: Format, unit: str) -> Iterator[tuple[Any, dict]]:
    """``(record, extras)`` of one unit, in file order; joined annotations in ``extras["$annotations"]``."""
    index = int(unit.rsplit("-", 1)[1])
    folder = posixpath.join(spill_folder(storage, source, location), f"{index:05d}")
    if not storage.exists(folder):
        return
    joined: dict[str, list] = {}
    if fmt.annotations is not None:
        for line in _lines(storage, folder, "annotations"):
            joined.setdefault(str(resolve(line["v"], fmt.link, None, None)), []).append(line["v"])
    for line in _lines(storage, folder, "records"):
        record, extras = line["v"], {"$key": line["k"]}
        if fmt.annotations is not None:
            extras[ANNOTATIONS] = joined.get(str(resolve(record, fmt.record_id, extras, None)), [])
        yield record, extras


def _lines(storage: Storage, folder: str, stem: str) -> Iterator[dict]:
    for path in sorted(storage.glob(posixpath.join(folder, f"{stem}-*.jsonl"))):
        with storage.fs.open(path, "rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
