"""The last passes: compare the images that share a band, then write each task table's removals.

``match`` (a unit per bucket) reads the band rows of its bucket from every table and evaluation set,
compares the images that share a band key, and writes ``pairs/<bucket>.parquet``: every training row
found within the distance of an evaluation image (``contamination``), or of a training image that
ranks above it (``near_duplicate``). The rule, one kept per cluster: **a sample is removed when one
of its near-duplicates ranks above it**, ranking by the richer annotation (more characters in its
answers), then the source listed first in the config, then the smaller id. So no two kept samples
are near-duplicates, and of a cluster the first by that rank is always kept.

``removals`` (a unit per task table) gathers its rows' findings from every bucket and the text pass,
one per sample (contamination before near-duplicate, then the smallest distance), and writes
``<root>/decontam/<dataset>/<unit>.parquet`` (:mod:`pipelines.layout.removals`). ``audit`` (one
unit) gathers the contamination rows of every table into ``<root>/decontam/contamination.parquet``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from decontam.context import FOUND, DecontamContext, write_marker
from decontam.phash import distances
from pipelines.layout.removals import AUDIT, REMOVALS_DIR, SCHEMA, removals_path, write_removals
from pipelines.layout.task_table import CONTENT_KEY, content_fingerprint
from pipelines.stage import Counters, Stage, Unit

_PRIORITY = {"contamination": 0, "near_duplicate": 1}


def band_paths(storage, ctx: DecontamContext) -> list[str]:
    return ([ctx.path(storage, "bands", f"{file:06d}.parquet") for file in range(ctx.files)]
            + [ctx.path(storage, "eval", f"{name}.bands.parquet") for name in ctx.eval_sets])


class MatchBuckets(Stage):
    """Per bucket: the images sharing a band key, compared; what each match removes."""

    name = "decontam-match"
    unit_kind = "buckets"

    def units(self, ctx):
        for bucket in range(ctx.buckets):
            yield Unit(f"{bucket:05d}", (bucket,))

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(ctx.path(storage, "pairs", f"{unit.name}.json"))

    def run_unit(self, unit, ctx):
        (bucket,) = unit.spec
        storage = ctx.storage()
        rows = pads.dataset(band_paths(storage, ctx), format="parquet", filesystem=storage.fs).to_table(
            filter=pc.field("bucket") == bucket).sort_by("key")
        found = _matches(rows, ctx)
        table = pa.Table.from_pylist(found, schema=FOUND)
        storage.write_parquet(ctx.path(storage, "pairs", f"{unit.name}.parquet"), table)
        write_marker(storage, ctx.path(storage, "pairs", f"{unit.name}.json"), {"found": len(found)})
        return Counters(samples=len(rows))


def _matches(rows: pa.Table, ctx: DecontamContext) -> list[dict]:
    near = ctx.settings.near_duplicates
    same_scope = near.scope == "image_task_language"
    limit = max(near.max_distance if near.enabled else -1, ctx.settings.image_distance)
    keys = rows["key"].to_numpy()
    if len(keys) < 2:
        return []
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    crowded = ends - starts > 1
    if not crowded.any():
        return []
    col = {name: rows[name].to_numpy(zero_copy_only=False) for name in
           ("hash", "file", "row", "id", "task", "language", "richness", "order", "single")}
    found = []
    for first, second in _pairs(starts[crowded], (ends - starts)[crowded]):
        apart = distances(col["hash"][first], col["hash"][second])
        close = apart <= limit
        for i, j, d in zip(first[close].tolist(), second[close].tolist(), apart[close].tolist(), strict=True):
            found += _finding(col, i, j, d, ctx, same_scope)
    return found


_PAIRS_PER_BATCH = 1 << 22


def _pairs(starts: np.ndarray, sizes: np.ndarray):
    """Every pair (i < j) within each group (rows ``start .. start + size``), in batches of a few million:
    the groups of one size at once, so a bucket of many small groups costs a few numpy calls, not a loop."""
    for size in np.unique(sizes).tolist():
        first, second = np.triu_indices(size, 1)
        of_size = starts[sizes == size]
        step = max(1, _PAIRS_PER_BATCH // len(first))
        for at in range(0, len(of_size), step):
            base = of_size[at : at + step, None]
            yield (base + first).reshape(-1), (base + second).reshape(-1)


def _rank(col, i: int) -> tuple:
    return (-int(col["richness"][i]), int(col["order"][i]), str(col["id"][i]))


def _finding(col, i: int, j: int, distance: int, ctx: DecontamContext, same_scope: bool) -> list[dict]:
    """What a pair within the distance removes: nothing, the training row near an evaluation image, or the
    lower-ranked of two training rows."""
    file_i, file_j = int(col["file"][i]), int(col["file"][j])
    if file_i < 0 and file_j < 0:
        return []
    if file_i < 0 or file_j < 0:
        train, held = (j, i) if file_i < 0 else (i, j)
        if distance > ctx.settings.image_distance:
            return []
        return [_row(col, train, "contamination", "", ctx.eval_sets[-1 - int(col["file"][held])],
                     str(col["id"][held]), distance)]
    near = ctx.settings.near_duplicates
    if not near.enabled or distance > near.max_distance or not (col["single"][i] and col["single"][j]):
        return []
    if (file_i, int(col["row"][i])) == (file_j, int(col["row"][j])):
        return []
    if same_scope and (col["task"][i] != col["task"][j] or col["language"][i] != col["language"][j]):
        return []
    winner, loser = (i, j) if _rank(col, i) < _rank(col, j) else (j, i)
    return [_row(col, loser, "near_duplicate", str(col["id"][winner]), "", "", distance)]


def _row(col, i: int, reason: str, kept: str, eval_set: str, eval_item: str, distance: int) -> dict:
    return {"file": int(col["file"][i]), "row": int(col["row"][i]), "id": str(col["id"][i]), "reason": reason,
            "kept": kept, "eval_set": eval_set, "eval_item": eval_item, "distance": distance, "ngram": ""}


class WriteRemovals(Stage):
    """Per task table: one finding per removed sample, written beside the table for the mixer."""

    name = "decontam-removals"
    unit_kind = "task tables"

    def __init__(self, tables: list[tuple[str, str, int]]):
        self.tables = tables

    def units(self, ctx):
        datasets = sorted({dataset for dataset, _, _ in self.tables})
        for file, (dataset, path, _) in enumerate(self.tables):
            yield Unit(f"{file:06d}", (file, path, translated_from(dataset, datasets)), group=dataset)

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(ctx.path(storage, "removed", f"{unit.name}.json"))

    def run_unit(self, unit, ctx):
        file, path, base = unit.spec
        storage = ctx.storage()
        pairs = pads.dataset([ctx.path(storage, "pairs", f"{b:05d}.parquet") for b in range(ctx.buckets)],
                             format="parquet", filesystem=storage.fs).to_table(filter=pc.field("file") == file)
        text = pq.read_table(ctx.path(storage, "text", f"{unit.name}.parquet"), filesystem=storage.fs)
        parts = [pairs, text.cast(FOUND)]
        if base and ctx.eval_sets:
            parts.append(_translated_leaks(storage, ctx, path, base, self.tables[file][0]))
        best: dict[str, dict] = {}
        for found in pa.concat_tables(parts).to_pylist():
            order = (_PRIORITY[found["reason"]], found["distance"], found["kept"], found["eval_set"], found["eval_item"])
            if found["id"] not in best or order < best[found["id"]][0]:
                best[found["id"]] = (order, found)
        rows = pa.Table.from_pylist([found for _, found in best.values()], schema=FOUND).select(SCHEMA.names)
        write_removals(storage, path, rows, _content(storage, path))
        reasons = Counter(found["reason"] for _, found in best.values())
        write_marker(storage, ctx.path(storage, "removed", f"{unit.name}.json"), {"removed": dict(reasons)})
        return Counters(samples=len(rows), drops=reasons)


def translated_from(dataset: str, datasets: list[str]) -> str:
    """The dataset ``dataset`` is a translated variant of (``coco-zh`` of ``coco``), or ""."""
    bases = [name for name in datasets if dataset.startswith(name + "-")]
    return max(bases, key=len) if bases else ""


def _translated_leaks(storage, ctx: DecontamContext, path: str, base: str, dataset: str) -> pa.Table:
    """A translated variant's samples whose original (same key, in ``base``) leaks an evaluation text: the
    translation leaks it too, in words no n-gram of the evaluation set's language matches."""
    leaks = pq.read_table(ctx.path(storage, "text", "all.parquet"), filesystem=storage.fs,
                          filters=[("dataset", "=", base)])
    ids = set(pq.read_table(path, columns=["id"], filesystem=storage.fs)["id"].to_pylist())
    rows = []
    for leak in leaks.to_pylist():
        variant = dataset + leak["id"][len(base):]
        if variant in ids:
            rows.append({**leak, "file": -1, "row": -1, "id": variant})
    return pa.Table.from_pylist(rows, schema=FOUND)


class GatherText(Stage):
    """One unit: every table's text matches in ``text/all.parquet`` (few: leaks are rare), for the
    translated variants of the samples they name."""

    name = "decontam-text"

    def __init__(self, tables: list[tuple[str, str, int]]):
        self.tables = tables

    def units(self, ctx):
        yield Unit("text", ())

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(ctx.path(storage, "text", "all.json"))

    def run_unit(self, unit, ctx):
        storage = ctx.storage()
        parts = []
        for file, (dataset, _, _) in enumerate(self.tables):
            table = pq.read_table(ctx.path(storage, "text", f"{file:06d}.parquet"), filesystem=storage.fs)
            if len(table):
                parts.append(table.append_column("dataset", pa.array([dataset] * len(table), pa.string())))
        schema = FOUND.append(pa.field("dataset", pa.string()))
        table = pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table()
        storage.write_parquet(ctx.path(storage, "text", "all.parquet"), table)
        write_marker(storage, ctx.path(storage, "text", "all.json"), {"rows": len(table)})
        return Counters(samples=len(table))


def _content(storage, path: str) -> str:
    """The task table's content fingerprint, as the mixer reads it (its metadata, else computed)."""
    parquet = pq.ParquetFile(path, filesystem=storage.fs)
    written = (parquet.schema_arrow.metadata or {}).get(CONTENT_KEY, b"").decode()
    return written or content_fingerprint(parquet.read().to_pylist())


class Audit(Stage):
    """One unit: every table's contamination rows in ``<root>/decontam/contamination.parquet``."""

    name = "decontam-audit"

    def __init__(self, tables: list[tuple[str, str, int]]):
        self.tables = tables

    def units(self, ctx):
        yield Unit("audit", ())

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(ctx.path(storage, "audit.json"))

    def run_unit(self, unit, ctx):
        storage = ctx.storage()
        parts = []
        for dataset, path, _ in self.tables:
            table = pq.read_table(removals_path(storage, path), filesystem=storage.fs)
            table = table.filter(pc.field("reason") == "contamination")
            if len(table):
                parts.append(table.append_column("dataset", pa.array([dataset] * len(table), pa.string())))
        audit = pa.concat_tables(parts) if parts else SCHEMA.append(pa.field("dataset", pa.string())).empty_table()
        audit = audit.rename_columns(["key" if name == "id" else name for name in audit.column_names])
        audit = audit.select(["key", "dataset", "eval_set", "eval_item", "distance", "ngram"])
        storage.write_parquet(storage.path(REMOVALS_DIR, AUDIT), audit.sort_by([("eval_set", "ascending"),
                                                                               ("key", "ascending")]))
        write_marker(storage, ctx.path(storage, "audit.json"), {"rows": len(audit)})
        return Counters(samples=len(audit))

