"""The URL lists, filtered on their own columns: a stage of the one contract, a unit per input file.

Each input file of a source (its ``locations``, globs expanded, in sorted order) becomes
``<root>/raw/<source>/_urls/part-NNNNN.parquet``: the rows the column filters keep
(:mod:`download.filters`), under the column names img2dataset reads, in row groups of
``samples_per_shard`` rows so that each shard task reads only its own rows. Beside it,
``part-NNNNN.json`` (written last: the unit's completion marker) says how many rows the file had,
how many were kept and why the others went. Filtering is deterministic, so a finished part is
reused by a rerun.
"""

from __future__ import annotations

import posixpath
import uuid
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from download import filters as url_filters
from download.context import DownloadContext, raw_folder
from pipelines.source import Source
from pipelines.stage import Counters, Stage, Unit
from pipelines.storage import Storage


def url_dir(storage: Storage, source: str) -> str:
    return posixpath.join(raw_folder(storage, source), "_urls")


class FilterUrlLists(Stage):
    """``_urls/part-NNNNN.parquet`` (+ ``.json``) for each input file of each source."""

    name = "download-filter"
    unit_kind = "files"  # for the progress lines, where the executor reads it

    def __init__(self, sources: list[Source]):
        self.sources = {source.name: source for source in sources}
        self._parts: dict[str, list[str]] = {}  # source -> its part names, as units() found them (driver only)

    def __getstate__(self):  # what the workers need: not the driver's bookkeeping
        return {**self.__dict__, "_parts": {}}

    def units(self, ctx: DownloadContext):
        storage = ctx.storage()
        for source in self.sources.values():
            names = self._parts[source.name] = []
            for index, location in enumerate(_expand_locations(source, storage)):
                names.append(f"part-{index:05d}")
                yield Unit(names[-1], (location,), group=source.name)

    def done(self, unit: Unit, ctx: DownloadContext) -> bool:
        storage = ctx.storage()
        return storage.exists(posixpath.join(url_dir(storage, unit.group), f"{unit.name}.json"))

    def run_unit(self, unit: Unit, ctx: DownloadContext) -> Counters:
        source, (location,) = self.sources[unit.group], unit.spec
        storage = ctx.storage()
        table = _read_url_list(location, storage)
        try:
            kept, dropped = url_filters.filter_url_list(table, source.columns, source.filters)
        except url_filters.MissingColumn as err:
            raise ValueError(f"source {source.name!r}, file {location}: {err}") from None
        folder = url_dir(storage, unit.group)
        _write_parquet(storage, posixpath.join(folder, f"{unit.name}.parquet"), _select_columns(kept, source),
                       ctx.settings.samples_per_shard)
        storage.write_json(posixpath.join(folder, f"{unit.name}.json"),
                           {"location": location, "urls": len(table), "kept": len(kept), "filtered": dict(dropped)})
        return Counters(samples=len(kept), drops=Counter(dropped))

    def summary(self, storage: Storage, source: str) -> tuple[int, Counter, list[tuple[str, int]]]:
        """After :func:`~pipelines.stage.execute`: the source's URL count, drops by filter, and its
        filtered lists as ``(path, kept rows)`` in file order (the order img2dataset numbers shards in)."""
        folder = url_dir(storage, source)
        urls, filtered, lists = 0, Counter(), []
        for name in self._parts[source]:
            part = storage.read_json(posixpath.join(folder, f"{name}.json"))
            urls += part["urls"]
            filtered.update(part["filtered"])
            lists.append((posixpath.join(folder, f"{name}.parquet"), part["kept"]))
        return urls, filtered, lists


def _write_parquet(storage: Storage, path: str, table: pa.Table, rows_per_group: int) -> None:
    """Like :meth:`Storage.write_parquet` (a temporary name, then moved), in row groups of a shard's rows."""
    storage.makedirs(posixpath.dirname(path))
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, temporary, filesystem=storage.fs, row_group_size=rows_per_group)
    storage.fs.mv(temporary, path)


def read_rows(storage: Storage, path: str, start: int, stop: int) -> pa.Table:
    """Rows ``[start, stop)`` of a parquet file, reading only the row groups that hold them."""
    with storage.fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        groups, offset, first = [], 0, None
        for index in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(index).num_rows
            if offset < stop and offset + rows > start:
                first = offset if first is None else first
                groups.append(index)
            offset += rows
        table = parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table()
    if stop > offset:
        raise ValueError(f"{path}: rows {start}-{stop} asked for, the file has {offset}")
    return table.slice(start - (first or 0), stop - start)


def _url_fs(location: str, storage: Storage):
    """The filesystem of a source location; one on the storage root's protocol shares its options."""
    import fsspec

    protocol = location.split("://", 1)[0] if "://" in location else "file"
    options = storage.options if protocol == storage.protocol else {}
    return fsspec.core.url_to_fs(location, **options)


def _expand_locations(source: Source, storage: Storage) -> list[str]:
    found: list[str] = []
    for location in source.locations:
        fs, path = _url_fs(location, storage)
        matches = sorted(fs.glob(path)) if any(ch in path for ch in "*?[") else ([path] if fs.exists(path) else [])
        if not matches:
            hint = f"; {source.obtain}" if source.obtain else ""
            raise FileNotFoundError(f"source {source.name!r}: nothing at {location!r}{hint}")
        prefix = location.split("://", 1)[0] + "://" if "://" in location else ""
        found.extend(prefix + match for match in matches)
    return found


def _read_url_list(location: str, storage: Storage) -> pa.Table:
    fs, path = _url_fs(location, storage)
    if path.endswith(".parquet"):
        return pq.read_table(path, filesystem=fs)
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json

    with fs.open(path, "rb", compression="infer") as f:
        if ".csv" in path:
            return pa_csv.read_csv(f)
        if ".tsv" in path:
            return pa_csv.read_csv(f, parse_options=pa_csv.ParseOptions(delimiter="\t"))
        if ".jsonl" in path or ".json" in path:
            return pa_json.read_json(f)
    raise ValueError(f"{location}: unsupported URL list format (use .parquet, .csv, .tsv or .jsonl)")


def _select_columns(table: pa.Table, source: Source) -> pa.Table:
    """Keep the columns img2dataset should carry into the shards, under the names it expects."""
    columns = source.columns
    wanted = {columns.url: "url"}
    if columns.caption and columns.caption in table.column_names:
        wanted[columns.caption] = "caption"
    for name in columns.extra:
        if name not in table.column_names:
            raise ValueError(f"source {source.name!r}: extra column {name!r} is not in the URL list")
        wanted[name] = name
    if columns.sha256:
        wanted[columns.sha256] = "expected_sha256"
    return table.select(list(wanted)).rename_columns(list(wanted.values()))
