"""The general readers: a source's files cut into units, and each unit's records, streamed.

======================  ===================================================  ==========================
reader                  what it reads                                        a unit
======================  ===================================================  ==========================
``json``                an array or an object keyed by id, anywhere in the   ``images_per_unit`` records,
                        file (``records``); optionally a second collection   spilled in one ijson pass
                        joined to it (``annotations``) (:mod:`.spill`)       (never read whole)
``jsonl``               JSON Lines                                           a byte range of lines
``per_file``            one annotation file per image: ``.json``, or text    ``images_per_unit`` files
                        whose lines are CSV rows (RCTW-17's quadrilaterals)
``parquet``             Parquet, Hub image columns ``{bytes, path}`` kept     row groups, about
                        as they are (the image bytes travel in the record)   ``images_per_unit`` rows
======================  ===================================================  ==========================

Every reader yields ``(record, extras)``: the record as the file holds it, and what the reader knows
about it (``$key``, ``$stem``, ``$parent``, ``$name``, ``$row``, ``$annotations``;
:mod:`tasks.published.paths`).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pipelines.runtime import run_tasks
from pipelines.stage import Unit
from pipelines.storage import Storage
from tasks import units as line_units
from tasks.published import spill
from tasks.published.mapping import Format

_PARQUET_BATCH = 256  # rows decoded at a time (image bytes included)


def reader_units(storage: Storage, source: str, fmt: Format, locations: list[str], per_unit: int) -> Iterator[Unit]:
    """The units of a source's files (``locations`` already expanded)."""
    if fmt.reader == "per_file":
        files = sorted(locations)
        stem = line_units.file_stem(posixpath.dirname(files[0])) if files else "files"
        for index, start in enumerate(range(0, len(files), per_unit)):
            yield Unit(f"{stem}-{index:05d}", ("per_file", tuple(files[start:start + per_unit])))
        return
    if fmt.reader == "json":
        # The one pass over each JSON file runs where the units do (Ray tasks when Ray is up), not here.
        calls = [(location,) for location in locations]
        split = dict(run_tasks(_partition, calls, shared=(storage.root_uri(), storage.options, source, fmt, per_unit)))
        for location in locations:
            yield from (Unit(name, ("json", location, name)) for name in split[location])
        return
    for location in locations:
        if fmt.reader == "jsonl":
            ranges = line_units.line_ranges(storage, source, location, per_unit)
            for index, (start, end) in enumerate(ranges):
                yield Unit(line_units.unit_name(location, index), ("jsonl", location, start, end))
        else:
            yield from _parquet_units(storage, location, per_unit)


def _partition(root: str, options: dict, source: str, fmt: Format, per_unit: int, location: str) -> tuple[str, list]:
    return location, spill.partition(Storage(root, options), source, location, fmt, per_unit)


def _parquet_units(storage: Storage, location: str, per_unit: int) -> Iterator[Unit]:
    import pyarrow.parquet as pq

    with storage.fs.open(location, "rb") as f:
        metadata = pq.ParquetFile(f).metadata
    groups, rows, index = [], 0, 0
    for group in range(metadata.num_row_groups):
        groups.append(group)
        rows += metadata.row_group(group).num_rows
        if rows >= per_unit:
            yield Unit(line_units.unit_name(location, index), ("parquet", location, tuple(groups)))
            groups, rows, index = [], 0, index + 1
    if groups:
        yield Unit(line_units.unit_name(location, index), ("parquet", location, tuple(groups)))


def unit_records(storage: Storage, source: str, fmt: Format, unit: Unit, drops: Counter) -> Iterator[tuple[Any, dict]]:
    """``(record, extras)`` of one unit; a record that is no valid JSON is counted (``invalid_json``)."""
    kind = unit.spec[0]
    if kind == "json":
        yield from spill.unit_records(storage, source, unit.spec[1], fmt, unit.spec[2])
    elif kind == "jsonl":
        _, location, start, end = unit.spec
        stem = line_units.file_stem(location)  # keys stay unique across a source's files
        for offset, record in line_units.read_records(storage, location, start, end, drops):
            yield record, {"$key": f"{stem}-o{offset}"}
    elif kind == "per_file":
        for path in unit.spec[1]:
            record = _annotation_file(storage, path, drops)
            if record is not None:
                stem = posixpath.basename(path).rsplit(".", 1)[0]
                parent = posixpath.basename(posixpath.dirname(path))
                yield record, {"$key": f"{parent}-{stem}", "$stem": stem, "$parent": parent,
                               "$name": posixpath.basename(path)}
    else:
        yield from _parquet_records(storage, unit.spec[1], unit.spec[2])


def _annotation_file(storage: Storage, path: str, drops: Counter) -> Any:
    """A ``.json`` file's value, or a text file's lines as CSV rows (``{"rows": [[field, ...], ...]}``)."""
    with storage.fs.open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        drops["annotation_not_utf8"] += 1
        return None
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            drops["invalid_json"] += 1
            return None
    rows = [row for row in csv.reader(io.StringIO(text), skipinitialspace=True) if any(cell.strip() for cell in row)]
    return {"rows": rows}


def _parquet_records(storage: Storage, location: str, groups: tuple[int, ...]) -> Iterator[tuple[Any, dict]]:
    import pyarrow.parquet as pq

    stem = line_units.file_stem(location)
    with storage.fs.open(location, "rb") as f:
        parquet = pq.ParquetFile(f)
        first = sum(parquet.metadata.row_group(g).num_rows for g in range(groups[0]))
        row = first
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, row_groups=list(groups)):
            for record in batch.to_pylist():
                yield record, {"$key": f"{stem}-r{row}", "$row": row}
                row += 1
