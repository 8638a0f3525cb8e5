"""PDFs from URL lists (Parquet, CSV or JSONL with a ``url`` column, ``columns.url``): rows in units,
each URL fetched by the downloader the flow hands the stage (the download stage's guarded fetch: size
cap, wall-clock budget per URL, redirects, per-host limits), a retry pass over the transient failures
at the end of the unit, and every URL accounted for: fetched, or counted under ``fetch_<reason>``.

A fetcher is ``url -> (bytes or None, reason or None, transient)``; it must pickle (it travels with
the stage to the workers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import fsspec

URL_LIST_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
Fetcher = Callable[[str], tuple[bytes | None, str | None, bool]]


def is_url_list(uri: str) -> bool:
    return uri.lower().endswith(URL_LIST_SUFFIXES)


def count_rows(uri: str, options: dict) -> int:
    """Rows of a URL list: Parquet from its footer, CSV and JSONL by their lines (no parsing)."""
    with fsspec.open(uri, "rb", **options) as f:
        if uri.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            return pq.ParquetFile(f).metadata.num_rows
        lines, last = 0, b"\n"
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
        lines += last != b"\n"
    return max(0, lines - 1) if uri.lower().endswith(".csv") else lines


def read_urls(uri: str, options: dict, column: str, start: int, stop: int) -> list[str]:
    """The ``column`` values of rows ``start:stop``; a clear error naming the file when it lacks the column."""
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet as pq

    with fsspec.open(uri, "rb", **options) as f:
        lower = uri.lower()
        if lower.endswith(".parquet"):
            names = pq.ParquetFile(f).schema_arrow.names
            if column not in names:
                raise ValueError(f"{uri}: no column {column!r} (columns.url); it has {names}")
            f.seek(0)
            table = pq.read_table(f, columns=[column])
        else:
            table = pyarrow.csv.read_csv(f) if lower.endswith(".csv") else pyarrow.json.read_json(f)
            if column not in table.column_names:
                raise ValueError(f"{uri}: no column {column!r} (columns.url); it has {table.column_names}")
    return [str(u or "") for u in table.column(column).slice(start, stop - start).to_pylist()]


def fetch_all(urls: list[str], fetch: Fetcher, drops: Counter, tallies: Counter) -> Iterator[tuple[int, str, bytes]]:
    """(row, url, body) for every URL fetched, first pass then one retry pass over transient failures."""
    again = []
    for row, url in enumerate(urls):
        tallies["urls"] += 1
        if not url.startswith(("http://", "https://")):
            drops["fetch_bad_url"] += 1
            continue
        data, reason, transient = fetch(url)
        if data is not None:
            tallies["fetched"] += 1
            yield row, url, data
        elif transient:
            again.append((row, url))
        else:
            drops[f"fetch_{reason}"] += 1
    for row, url in again:
        data, reason, _ = fetch(url)
        if data is not None:
            tallies["fetched"] += 1
            tallies["recovered_by_retry"] += 1
            yield row, url, data
        else:
            drops[f"fetch_{reason}"] += 1
