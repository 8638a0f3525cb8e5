"""The mixer's distributed passes, each a stage of the one contract (:mod:`pipelines.stage`).

Every pass reads and writes only its own unit's files under the mix's work folder
(``<root>/_mix/<plan hash>/``), so each runs as Ray tasks on the cluster, resumes per unit, and
gives the same bytes whatever the number of workers:

============  ==========================  =====================================================
pass          one unit per                writes
============  ==========================  =====================================================
``index``     32 task tables              ``index/<u>.parquet``: each row's dedup key, hashed
                                          into ``buckets`` row groups; ``index/<f>.json``: its
                                          rows per (task, language), its builder's drops
``dedup``     key bucket                  ``dups/<b>.parquet``: (file, row) of every exact
                                          duplicate but the first in (dataset, id) order;
                                          ``dups/<b>.json``: removals per (table, task, language)
``route``     32 task tables              ``route/<u>.parquet``: its picks (encoded ``.json``
                                          member, image refs, output position), one row group
                                          per output block; ``route/<f>.json``: picks per language
============  ==========================  =====================================================

The ``.json`` beside each output is the unit's completion marker and what the driver reads back:
a few numbers per unit, never a row per sample. The shard writer's passes (``cut``, ``write``)
live in :mod:`shards.write`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipelines.layout.removals import read_removals
from pipelines.layout.task_table import CONTENT_KEY, PLAN_COLUMNS, content_fingerprint, read_counters
from pipelines.stage import Counters, Stage, StageContext, Unit
from pipelines.storage import Storage
from shards.permute import permute
from shards.schema import encode_sample
from shards.writer import member_bytes

IMAGE_REF = pa.struct([("uri", pa.string()), ("offset", pa.int64()), ("size", pa.int64()),
                       ("format", pa.string()), ("sha256", pa.string())])
ROUTE = pa.schema([("block", pa.int32()), ("position", pa.int64()), ("key", pa.string()),
                   ("json", pa.binary()), ("images", pa.list_(IMAGE_REF)), ("bytes", pa.int64())])
_DUPS = pa.schema([("file", pa.int32()), ("row", pa.int32())])


@dataclass(frozen=True)
class MixContext(StageContext):
    """What every pass needs; pickles small (no file lists: units carry their own inputs)."""

    options: dict  # no default here (the root's options): the work folder after it has none either
    work: str  # the work folder, relative to the root
    dedup: str = "image_task_language"
    buckets: int = 1
    files: int = 0  # task tables in the mixture (index and route units are numbered 0..files-1)
    block: int = 100_000  # output positions per block (one writer task)
    total: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)
    removals: bool = True  # leave out what the decontamination stage listed

    def path(self, storage: Storage, *parts: str) -> str:
        return storage.path(self.work, *parts)


TABLES_PER_UNIT = 32  # task tables per index or route unit (and per output file)


def unit_name(index: int) -> str:
    return f"{index:06d}"


def groups(tables: int) -> int:
    """How many index or route units (files) ``tables`` task tables make."""
    return -(-tables // TABLES_PER_UNIT)


def write_marker(storage: Storage, path: str, record: dict) -> None:
    storage.write_bytes(path, json.dumps(record, sort_keys=True).encode())


def read_markers(storage: Storage, paths: list[str]) -> list[dict]:
    """The units' ``.json`` records, fetched together (one batched request on object storage)."""
    if not paths:
        return []
    data = storage.fs.cat(paths)
    return [json.loads(data[path]) for path in paths]


def _triple(task: str, language: str) -> str:
    return f"{task}|{language}"


class _PerFile(Stage):
    """A pass over the task tables, :data:`TABLES_PER_UNIT` of them per unit and per output file, so
    the passes that read every unit's output (dedup, cut, write) open tables / 32 files, not tables."""

    folder: str

    def __init__(self, tables: list[tuple[str, str]]):
        self.tables = tables  # (dataset, path) per file index

    def members(self, group: int) -> list[tuple[int, str, str]]:
        first = group * TABLES_PER_UNIT
        return [(i, *self.tables[i]) for i in range(first, min(first + TABLES_PER_UNIT, len(self.tables)))]

    def units(self, ctx):
        for group in range(groups(len(self.tables))):
            yield Unit(unit_name(group), tuple(self.members(group)))

    def marker(self, storage: Storage, ctx: MixContext, unit: Unit) -> str:
        return ctx.path(storage, self.folder, f"{unit.name}.json")

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(self.marker(storage, ctx, unit))


class IndexPass(_PerFile):
    """Count each table's rows per (task, language) and hash its dedup keys into buckets."""

    name = "mix-index"
    folder = "index"

    def run_unit(self, unit, ctx):
        storage = ctx.storage()
        records, keyed = [], []
        for index, dataset, path in unit.spec:
            record, table = _index_table(storage, ctx, index, dataset, path)
            records.append(record)
            keyed.append(table)
        if ctx.dedup != "off":
            table = pa.concat_tables(keyed).sort_by("bucket")
            _write_grouped(storage, ctx.path(storage, self.folder, f"{unit.name}.parquet"), table, "bucket")
        write_marker(storage, self.marker(storage, ctx, unit), {"tables": records})
        return Counters(samples=sum(record["rows"] for record in records))


def _index_table(storage: Storage, ctx: MixContext, index: int, dataset: str, path: str):
    """One table's counts and drops, and (dedup on) its rows' keys and buckets."""
    parquet = pq.ParquetFile(path, filesystem=storage.fs)
    drops, inputs = read_counters(parquet.schema_arrow)
    # What the table holds, not how it is stored: written by the builder, or hashed here for older tables.
    content = (parquet.schema_arrow.metadata or {}).get(CONTENT_KEY, b"").decode() or content_fingerprint(
        parquet.read().to_pylist())
    table = parquet.read(columns=PLAN_COLUMNS)
    gone, decontam, content = decontaminated(storage, path, table["id"].to_pylist(), content, ctx.removals)
    counts = Counter(_triple(t, lang) for t, lang, out in zip(table["task"].to_pylist(), table["language"].to_pylist(),
                                                             gone.tolist(), strict=True) if not out)
    record = {"file": index, "dataset": dataset, "rows": len(table), "inputs": inputs, "drops": drops,
              "counts": dict(sorted(counts.items())), "content": content, "decontam": decontam}
    if ctx.dedup == "off":
        return record, None
    key = table["image_sha256"]
    if ctx.dedup == "image_task_language":
        key = pc.binary_join_element_wise(key, table["task"], table["language"], "|")
    buckets = np.array([int(h[:8], 16) % ctx.buckets for h in table["image_sha256"].to_pylist()], dtype=np.int32)
    keyed = pa.table({"bucket": buckets, "key": key, "dataset": pa.array([dataset] * len(table), pa.string()),
                      "id": table["id"], "file": np.full(len(table), index, dtype=np.int32),
                      "row": np.arange(len(table), dtype=np.int32), "task": table["task"],
                      "language": table["language"]})
    return record, keyed.filter(pa.array(~gone))


def decontaminated(storage: Storage, path: str, ids: list[str], content: str | None = None, apply: bool = True):
    """The rows of the task table at ``path`` the decontamination stage removes (a mask over ``ids``), their
    count per reason, and the content the mixture draws from: the table's fingerprint, and the removed
    ids when there are any (so a changed removal list is a changed input). ``content`` None: not checked."""
    removals = read_removals(storage, path, content) if apply else None
    if removals is None or not len(removals):
        return np.zeros(len(ids), dtype=bool), {}, content
    gone = pc.is_in(pa.array(ids, pa.string()), value_set=removals["id"]).to_numpy(zero_copy_only=False)
    removed = sorted(removals["id"].to_pylist())
    content = hashlib.sha256(json.dumps([content, removed]).encode()).hexdigest() if content is not None else None
    return gone, dict(sorted(Counter(removals["reason"].to_pylist()).items())), content


class DedupPass(Stage):
    """Per key bucket: keep the first of each key in (dataset, id) order, list the others."""

    name = "mix-dedup"

    def units(self, ctx):
        for bucket in range(ctx.buckets):
            yield Unit(f"{bucket:05d}", (bucket,))

    def marker(self, storage, ctx, unit):
        return ctx.path(storage, "dups", f"{unit.name}.json")

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(self.marker(storage, ctx, unit))

    def run_unit(self, unit, ctx):
        (bucket,) = unit.spec
        storage = ctx.storage()
        paths = [ctx.path(storage, "index", f"{unit_name(g)}.parquet") for g in range(groups(ctx.files))]
        rows = pads.dataset(paths, format="parquet", filesystem=storage.fs).to_table(
            filter=pc.field("bucket") == bucket)
        rows = rows.sort_by([("key", "ascending"), ("dataset", "ascending"), ("id", "ascending")])
        keys = rows["key"].combine_chunks()
        first = np.ones(len(rows), dtype=bool)
        if len(rows) > 1:
            first[1:] = pc.not_equal(keys.slice(1), keys.slice(0, len(rows) - 1)).to_numpy(zero_copy_only=False)
        losers = rows.filter(pa.array(~first))
        removed = Counter(f"{f}|{t}|{lang}" for f, t, lang in zip(
            losers["file"].to_pylist(), losers["task"].to_pylist(), losers["language"].to_pylist(), strict=True))
        by_dataset = Counter(losers["dataset"].to_pylist())
        dups = losers.select(["file", "row"]).cast(_DUPS).sort_by([("file", "ascending"), ("row", "ascending")])
        storage.write_parquet(ctx.path(storage, "dups", f"{unit.name}.parquet"), dups)
        write_marker(storage, self.marker(storage, ctx, unit),
                     {"removed": dict(sorted(removed.items())), "by_dataset": dict(sorted(by_dataset.items()))})
        return Counters(samples=len(losers))


class RoutePass(_PerFile):
    """Each table's picks, with their output positions, grouped by the output block they land in.

    A unit's spec also carries its segments: ``(task, offset, full, rest)`` per task it holds
    picks for (``full`` copies of every surviving row, plus ``rest`` rows drawn without
    replacement), numbered from ``offset`` in the mixture's pick order.
    """

    name = "mix-route"
    folder = "route"

    def __init__(self, tables, segments: dict[int, list[tuple[str, int, int, int]]]):
        super().__init__(tables)
        self.segments = segments

    def units(self, ctx):
        for group in range(groups(len(self.tables))):
            members = [(i, dataset, path, tuple(self.segments[i])) for i, dataset, path in self.members(group)
                       if self.segments.get(i)]
            if members:
                yield Unit(unit_name(group), tuple(members))

    def run_unit(self, unit, ctx):
        storage = ctx.storage()
        languages: Counter = Counter()
        dups = _removed_rows(storage, ctx, [member[0] for member in unit.spec])
        parts = [_route_table(storage, ctx, *member, languages, dups.get(member[0], _NONE)) for member in unit.spec]
        routed = pa.concat_tables(parts).sort_by("position")
        _write_grouped(storage, ctx.path(storage, self.folder, f"{unit.name}.parquet"), routed, "block")
        write_marker(storage, self.marker(storage, ctx, unit),
                     {"picks": len(routed), "languages": dict(sorted(languages.items()))})
        return Counters(samples=len(routed))


def _removed_rows(storage: Storage, ctx: MixContext, files: list[int]) -> dict[int, np.ndarray]:
    """Row numbers the dedup pass removed from each of ``files``: every bucket's list read once per
    unit, not once per table (a table-at-a-time read opens buckets x tables files)."""
    if ctx.dedup == "off":
        return {}
    dups = pads.dataset([ctx.path(storage, "dups", f"{b:05d}.parquet") for b in range(ctx.buckets)],
                        format="parquet", filesystem=storage.fs).to_table(filter=pc.field("file").isin(files))
    file_of, row = dups["file"].to_numpy(), dups["row"].to_numpy()
    return {int(f): row[file_of == f] for f in np.unique(file_of)}


_NONE = np.zeros(0, dtype=np.int32)


def _route_table(storage: Storage, ctx: MixContext, index: int, dataset: str, path: str, segments,
                 languages: Counter, removed: np.ndarray):
    """One table's picks as routed rows (output position, block, encoded ``.json``, image refs, bytes);
    ``removed``: its rows the dedup pass dropped."""
    table = pq.read_table(path, filesystem=storage.fs)
    keep = ~decontaminated(storage, path, table["id"].to_pylist(), apply=ctx.removals)[0]
    keep[removed] = False
    tasks = np.asarray(table["task"].to_pylist(), dtype=object)
    ids = np.asarray(table["id"].to_pylist(), dtype=object)
    rows_out, repeats_out, global_out = [], [], []
    for task, offset, full, rest in segments:
        survivors = np.flatnonzero(keep & (tasks == task))
        survivors = survivors[np.argsort(ids[survivors], kind="stable")]  # picks follow ids, not row positions
        # The draw is named by the table's own path, not its number: adding a dataset changes no other's.
        stream = seeded_stream(ctx.seed, f"{task}/{dataset}/{path.rsplit('/', 1)[-1]}")
        chosen = np.sort(stream.choice(len(survivors), rest, replace=False)) if rest else np.zeros(0, np.int64)
        picks = np.concatenate([*([survivors] * full), survivors[chosen]]).astype(np.int64)
        repeats = np.concatenate([np.repeat(np.arange(full, dtype=np.int64), len(survivors)),
                                  np.full(rest, full, dtype=np.int64)])
        rows_out.append(picks)
        repeats_out.append(repeats)
        global_out.append(offset + np.arange(len(picks), dtype=np.int64))
    picks, repeats = np.concatenate(rows_out), np.concatenate(repeats_out)
    positions = permute(np.concatenate(global_out), ctx.total, ctx.seed)
    rows = table.take(pa.array(picks)).to_pylist()
    keys, jsons, images, sizes = [], [], [], []
    for row, repeat in zip(rows, repeats.tolist(), strict=True):
        key = row["id"] if repeat == 0 else f"{row['id']}-r{repeat}"
        encoded = encode_sample(row, key, repeat)
        refs = [{k: image[k] for k in ("uri", "offset", "size", "format", "sha256")} for image in row["images"]]
        keys.append(key)
        jsons.append(encoded)
        images.append(refs)
        sizes.append(member_bytes(len(encoded)) + sum(member_bytes(ref["size"]) for ref in refs))
        languages[row["language"]] += 1
    return pa.table({"block": (positions // ctx.block).astype(np.int32), "position": positions, "key": keys,
                     "json": jsons, "images": images, "bytes": sizes}, schema=ROUTE)


def seeded_stream(seed: int, name: str) -> np.random.Generator:
    words = np.frombuffer(hashlib.sha256(name.encode()).digest()[:8], dtype=np.uint32)
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, *words.tolist()]))


def _write_grouped(storage: Storage, path: str, table: pa.Table, column: str) -> None:
    """``table`` (sorted by ``column``) with one row group per value, so readers of one value read one group."""
    values = table[column].to_numpy()
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]).tolist() if len(values) else []
    temporary = f"{path}.tmp"
    storage.makedirs(path.rsplit("/", 1)[0])
    with storage.fs.open(temporary, "wb") as f, pq.ParquetWriter(f, table.schema) as writer:
        if not starts:  # an empty table: the schema, no rows
            writer.write_table(table)
        ends = [*starts[1:], len(values)] if starts else []
        for start, end in zip(starts, ends, strict=True):
            writer.write_table(table.slice(start, end - start), row_group_size=end - start)
    storage.fs.mv(temporary, path)
