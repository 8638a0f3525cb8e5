"""The last passes: each task table's removals, the translated variants' text leaks, the audit file.

``removals`` (a unit per task table) gathers its rows' findings from every bucket of the match pass
(:mod:`decontam.match`) and the text pass, one per sample (contamination before near-duplicate, then
the smallest distance), and writes ``<root>/decontam/<dataset>/<unit>.parquet``
(:mod:`pipelines.layout.removals`). ``text`` (one unit) gathers every table's text matches for the
translated variants; ``audit`` (one unit) gathers the contamination rows of every table into
``<root>/decontam/contamination.parquet``.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from decontam.context import FOUND, DecontamContext, write_marker
from pipelines.layout.removals import AUDIT, REMOVALS_DIR, SCHEMA, removals_path, write_removals
from pipelines.layout.task_table import CONTENT_KEY, content_fingerprint
from pipelines.stage import Counters, Stage, Unit

_PRIORITY = {"contamination": 0, "near_duplicate": 1}


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
        parts = [pairs, text.cast(FOUND), _several_images(storage, ctx, file)]
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


def _several_images(storage, ctx: DecontamContext, file: int) -> pa.Table:
    """Near-duplicates among samples of several images: two samples with as many images each are
    near-duplicates when every image of each is within the distance of one of the other's (in any
    order); the lower-ranked goes. ``distance``: the farthest of an image from its closest counterpart."""
    paths = [ctx.path(storage, "pairs", f"{b:05d}.multi.parquet") for b in range(ctx.buckets)]
    pairs = pads.dataset(paths, format="parquet", filesystem=storage.fs).to_table(filter=pc.field("file") == file)
    closest: dict[tuple, dict[str, dict[int, int]]] = {}
    rows: dict[tuple, dict] = {}
    for pair in pairs.to_pylist():
        key = (pair["row"], pair["other_file"], pair["other_row"])
        seen = closest.setdefault(key, {"own": {}, "other": {}})
        for side, place in (("own", pair["image"]), ("other", pair["other_image"])):
            seen[side][place] = min(seen[side].get(place, pair["distance"]), pair["distance"])
        rows[key] = pair
    found = []
    for key, seen in closest.items():
        pair = rows[key]
        if len(seen["own"]) < pair["count"] or len(seen["other"]) < pair["count"]:
            continue
        own = (-pair["richness"], pair["order"], pair["id"])
        if own < (-pair["other_richness"], pair["other_order"], pair["other_id"]):
            continue
        found.append({"file": file, "row": pair["row"], "id": pair["id"], "reason": "near_duplicate",
                      "kept": pair["other_id"], "eval_set": "", "eval_item": "", "ngram": "",
                      "distance": max(*seen["own"].values(), *seen["other"].values())})
    return pa.Table.from_pylist(found, schema=FOUND)


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

