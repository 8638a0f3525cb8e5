"""The retry pass's URL list: which failures are worth another try, and when the server allows it.

Retryable failures (timeouts, 5xx, 408/429, connection errors) go into the next pass; a URL that
was ``too_slow`` goes once at most (a host that trickles once mostly trickles again, and each try
costs a whole budget); a 429/503 with ``Retry-After`` carries its "not before" time, which the
next pass's download honours, unless it asked for more than ``max_retry_after_s`` (then it is
not retried and stays counted as ``http_429``/``http_503``).
"""

from __future__ import annotations

import posixpath
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from download.fetch import parse_retry_after
from download.guards import classify_error
from pipelines.storage import Storage

ORIGIN_KEY = "vlmix_origin_key"  # column carrying a retried row's first-pass key
NOT_BEFORE = "vlmix_not_before"  # retry lists only: epoch seconds before which the URL is not asked again
_DROPPED = {"key", "status", "error_message", "width", "height", "original_width", "original_height", "sha256",
            "exif"}


def shard_tables(storage: Storage, out: str, first: int, stop: int | None) -> list[pa.Table]:
    """img2dataset's per-shard result tables of shards [first, stop)."""
    tables = []
    for path in storage.glob(posixpath.join(out, "[0-9]*.parquet")):
        shard_id = int(posixpath.basename(path).split(".")[0])
        if shard_id >= first and (stop is None or shard_id < stop):
            tables.append(storage.read_parquet(path))
    return tables


def _failures(table: pa.Table) -> list[dict]:
    return table.filter(pc.not_equal(table["status"], "success")).to_pylist()


def retry_list(storage: Storage, out: str, first: int, stop: int, round_number: int, max_retry_after_s: float):
    """Write the failures of shards [first, stop) worth retrying as a URL list; None if there are none."""
    target = posixpath.join(out, f"_retry{round_number}", "urls.parquet")
    if storage.exists(target):
        return target, len(storage.read_parquet(target, columns=["url"]))
    slow_before: Counter = Counter()  # too_slow failures of each row in the passes before these shards
    for table in shard_tables(storage, out, 0, first):
        for row in _failures(table):
            if classify_error(row["error_message"])[0] == "too_slow":
                slow_before[row.get(ORIGIN_KEY) or row["key"]] += 1
    rows = []
    for table in shard_tables(storage, out, first, stop):
        for row in _failures(table):
            reason, retryable = classify_error(row["error_message"])
            origin = row.get(ORIGIN_KEY) or row["key"]
            asked = parse_retry_after(row["error_message"])
            if not retryable or (reason == "too_slow" and slow_before[origin]):
                continue
            if asked is not None and asked[0] > max_retry_after_s:
                continue
            row[NOT_BEFORE] = asked[1] if asked else None
            rows.append(row)
    if not rows:
        return None
    rows.sort(key=lambda row: row.get(ORIGIN_KEY) or row["key"])
    records = [{k: v for k, v in row.items() if k not in _DROPPED} for row in rows]
    for record, row in zip(records, rows, strict=True):
        record[ORIGIN_KEY] = row.get(ORIGIN_KEY) or row["key"]
    table = pa.Table.from_pylist(records)
    column = table.schema.get_field_index(NOT_BEFORE)  # typed, also when every value is null
    storage.write_parquet(target, table.set_column(column, NOT_BEFORE, table[NOT_BEFORE].cast(pa.float64())))
    return target, len(records)


def not_before(rows: pa.Table) -> dict[str, float]:
    """url -> epoch seconds, from a retry list's ``NOT_BEFORE`` column (empty for a first pass's rows)."""
    if NOT_BEFORE not in rows.column_names:
        return {}
    rows = rows.filter(pc.is_valid(rows[NOT_BEFORE]))
    return dict(zip(rows["url"].to_pylist(), rows[NOT_BEFORE].to_pylist(), strict=True))
