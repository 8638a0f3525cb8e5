"""Splitting annotation files of any size into units without holding them in memory.

A unit is the task stage's resume point: one task table per unit and dataset. JSON Lines files are
cut at line boundaries every ``lines_per_unit`` records; the cut points come from one streaming pass
over the file (64 KiB at a time) and are remembered under ``<root>/tasks/_units/`` keyed by the
file's size, so a rerun does not read the file again. A unit then reads only its own byte range.

>>> ranges = line_ranges(storage, "/data/laion.jsonl", 10_000)  # doctest: +SKIP
>>> records = list(read_records(storage, "/data/laion.jsonl", *ranges[3], drops))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from collections.abc import Iterator

from pipelines.layout.task_table import TASKS_DIR
from pipelines.storage import Storage

UNITS_DIR = "_units"
_BLOCK = 1 << 16


def file_stem(location: str) -> str:
    """``s3://b/synthdog_en.jsonl`` -> ``synthdog_en``."""
    return posixpath.basename(location.rstrip("/")).split(".")[0]


def unit_name(location: str, index: int) -> str:
    """``<file stem>-<NNNNN>``: the unit's name, as its task tables are named."""
    return f"{file_stem(location)}-{index:05d}"


def spill_folder(storage: Storage, source: str, location: str) -> str:
    """Where a source's per-file unit index and spill files live (one folder per input file)."""
    digest = hashlib.blake2b(location.encode(), digest_size=6).hexdigest()
    return storage.path(TASKS_DIR, UNITS_DIR, source, f"{file_stem(location)}-{digest}")


def line_ranges(storage: Storage, source: str, location: str, lines_per_unit: int) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of consecutive runs of ``lines_per_unit`` non-empty lines."""
    size = storage.fs.size(location)
    index_path = posixpath.join(spill_folder(storage, source, location), "lines.json")
    if storage.exists(index_path):
        saved = storage.read_json(index_path)
        if saved.get("size") == size and saved.get("lines_per_unit") == lines_per_unit:
            return [tuple(pair) for pair in saved["ranges"]]
    ranges: list[tuple[int, int]] = []
    start = position = lines = 0
    pending_content = False  # bytes of a line seen since its newline
    with storage.fs.open(location, "rb") as f:
        while block := f.read(_BLOCK):
            offset = 0
            while True:
                newline = block.find(b"\n", offset)
                if newline < 0:
                    pending_content = pending_content or bool(block[offset:].strip())
                    break
                if pending_content or block[offset:newline].strip():
                    lines += 1
                pending_content = False
                offset = newline + 1
                if lines == lines_per_unit:
                    ranges.append((start, position + offset))
                    start, lines = position + offset, 0
            position += len(block)
    if lines or pending_content:
        ranges.append((start, position))
    storage.write_json(index_path, {"size": size, "lines_per_unit": lines_per_unit, "ranges": ranges})
    return ranges


def read_records(storage: Storage, location: str, start: int, end: int, drops: Counter) -> Iterator[tuple[int, dict]]:
    """``(byte offset, record)`` of each JSON line in ``[start, end)``; a line that is no JSON object is
    counted (``invalid_json``) and skipped."""
    with storage.fs.open(location, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    offset = start
    for line in data.split(b"\n"):
        here, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            drops["invalid_json"] += 1
            continue
        if not isinstance(record, dict):
            drops["invalid_json"] += 1
            continue
        yield here, record
