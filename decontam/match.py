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

import itertools
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from decontam.context import BANDS, FOUND, MULTI, DecontamContext, write_marker
from decontam.phash import distances
from pipelines.layout.removals import AUDIT, REMOVALS_DIR, SCHEMA, removals_path, write_removals
from pipelines.layout.task_table import CONTENT_KEY, content_fingerprint
from pipelines.stage import Counters, Stage, Unit

_PRIORITY = {"contamination": 0, "near_duplicate": 1}


def band_paths(storage, ctx: DecontamContext) -> list[str]:
    return ([ctx.path(storage, "bands", f"{file:06d}.parquet") for file in range(ctx.files)]
            + [ctx.path(storage, "eval", f"{name}.bands.parquet") for name in ctx.eval_sets])


def read_bucket(storage, paths: list[str], bucket: int) -> pa.Table:
    """The rows of ``bucket`` from every band file: the one row group each file holds for it (found by
    its statistics), nothing else read."""
    parts = []
    for path in paths:
        parquet = pq.ParquetFile(path, filesystem=storage.fs)
        column = parquet.schema_arrow.get_field_index("bucket")
        for group in range(parquet.num_row_groups):
            meta = parquet.metadata.row_group(group)
            stats = meta.column(column).statistics
            if meta.num_rows and (stats is None or not stats.has_min_max or stats.min <= bucket <= stats.max):
                part = parquet.read_row_group(group)
                parts.append(part if stats is not None and stats.min == stats.max else
                             part.filter(pc.field("bucket") == bucket))
    return pa.concat_tables(parts) if parts else BANDS.empty_table()


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
        rows = read_bucket(storage, band_paths(storage, ctx), bucket)
        crowded: Counter = Counter()
        multi: list[dict] = []
        found = _matches(rows, ctx, crowded, multi)
        table = pa.Table.from_pylist(found, schema=FOUND)
        storage.write_parquet(ctx.path(storage, "pairs", f"{unit.name}.parquet"), table)
        storage.write_parquet(ctx.path(storage, "pairs", f"{unit.name}.multi.parquet"),
                              pa.Table.from_pylist(multi, schema=MULTI))
        write_marker(storage, ctx.path(storage, "pairs", f"{unit.name}.json"), {"found": len(found), **crowded})
        return Counters(samples=len(rows), tallies={"index": crowded})


def _matches(rows: pa.Table, ctx: DecontamContext, counted: Counter, multi: list[dict]) -> list[dict]:
    """The findings of the pairs of images sharing a key in ``rows`` (one bucket's band rows); pairs of
    images of two samples with several images each go to ``multi``, to be judged sample by sample."""
    near = ctx.settings.near_duplicates
    same_scope = near.scope == "image_task_language"
    limit = max(near.max_distance if near.enabled else -1, ctx.settings.image_distance)
    keys = rows["key"].to_numpy()
    if len(keys) < 2:
        return []
    # Each file's rows come sorted by key: a stable sort merges the runs.
    by_key = np.argsort(keys, kind="stable")
    keys = keys[by_key]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    several = ends - starts > 1
    if not several.any():
        return []
    hashes = rows["hash"].to_numpy()[by_key]
    sizes = ends - starts
    window = ctx.settings.near_duplicates.window
    crowd = sizes > window
    if crowd.any():
        counted["crowded_keys"] += int(crowd.sum())
        counted["crowded_images"] += int(sizes[crowd].sum())
    pairs = _pairs(starts[several & ~crowd], sizes[several & ~crowd])
    close = [], [], []
    crowds = _windows(starts[crowd], sizes[crowd], hashes, window, lambda at: _ranks(rows, by_key[at]))
    for first, second in itertools.chain(pairs, crowds):
        apart = distances(hashes[first], hashes[second])
        near_enough = apart <= limit
        for kept, values in zip(close, (first, second, apart), strict=True):
            kept.append(values[near_enough])
    if not close[0]:
        return []
    # The rows of the close pairs only, with every column: each pair of images once (several bands of a
    # bucket may hold the same pair).
    first, second = by_key[np.concatenate(close[0])], by_key[np.concatenate(close[1])]
    apart = np.concatenate(close[2])
    needed = np.unique(np.r_[first, second])
    sub = rows.take(pa.array(needed))
    first, second = np.searchsorted(needed, first), np.searchsorted(needed, second)
    col = {name: sub[name].to_numpy(zero_copy_only=False) for name in sub.column_names}
    image = (col["file"].astype(np.int64) << 47) | (col["row"].astype(np.int64) << 16) | col["image"].astype(np.int64)
    a, b = image[first], image[second]
    _, once = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0, return_index=True)
    found = []
    for i, j, d in zip(first[once].tolist(), second[once].tolist(), apart[once].tolist(), strict=True):
        found += _finding(col, i, j, d, ctx, same_scope, multi)
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


def _windows(starts: np.ndarray, sizes: np.ndarray, hashes: np.ndarray, window: int, ranks):
    """Pairs within a crowded key (more images than ``window``), about ``window`` x size instead of size^2 / 2:
    each image with the ``window`` images after it in hash order (equal and nearly equal hashes sort
    close), and each image of a run of equal hashes with the run's first by rank (``ranks(positions)``:
    one sortable key per image), so of equal hashes only the first by rank is ever kept."""
    for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
        at = np.arange(start, start + size)
        order = at[np.lexsort((ranks(at), hashes[at]))]
        for step in range(1, window + 1):
            yield order[:-step], order[step:]
        sorted_hashes = hashes[order]
        run_start = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
        leader = run_start[np.searchsorted(run_start, np.arange(size), side="right") - 1]
        far = np.arange(size) - leader > window
        yield order[leader[far]], order[far]


def _ranks(rows: pa.Table, at: np.ndarray) -> np.ndarray:
    """The keep rule's order of the rows ``at`` (richer first, then the source listed first, then the smaller
    id), as one integer per row."""
    part = rows.take(pa.array(at)).select(["richness", "order", "id"]).to_pylist()
    ranked = sorted(range(len(part)), key=lambda k: (-part[k]["richness"], part[k]["order"], part[k]["id"]))
    out = np.empty(len(part), dtype=np.int64)
    out[ranked] = np.arange(len(part))
    return out


def _rank(col, i: int) -> tuple:
    return (-int(col["richness"][i]), int(col["order"][i]), str(col["id"][i]))


def _finding(col, i: int, j: int, distance: int, ctx: DecontamContext, same_scope: bool,
             multi: list[dict]) -> list[dict]:
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
    if not near.enabled or distance > near.max_distance or col["count"][i] != col["count"][j]:
        return []
    if (file_i, int(col["row"][i])) == (file_j, int(col["row"][j])):
        return []
    if same_scope and col["scope"][i] != col["scope"][j]:
        return []
    if col["count"][i] > 1:  # two samples of several images each: judged by the removals pass, per sample
        multi += [_image_pair(col, i, j, distance), _image_pair(col, j, i, distance)]
        return []
    winner, loser = (i, j) if _rank(col, i) < _rank(col, j) else (j, i)
    return [_row(col, loser, "near_duplicate", str(col["id"][winner]), "", "", distance)]


def _image_pair(col, i: int, j: int, distance: int) -> dict:
    own = {name: col[name][i].item() for name in ("file", "row", "image", "count", "richness", "order")}
    other = {f"other_{name}": col[name][j].item() for name in ("file", "row", "image", "richness", "order")}
    own["id"], other["other_id"] = str(col["id"][i]), str(col["id"][j])
    return {**own, **other, "distance": distance}


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

