"""The match pass: compare the images that share a band key, and say what each close pair removes.

``match`` (a unit per bucket) reads the band rows of its bucket from every table and evaluation set,
compares the images that share a band key, and writes ``pairs/<bucket>.parquet``: every training row
found within the distance of an evaluation image (``contamination``), or of a training image that
ranks above it (``near_duplicate``). The rule, one kept per cluster: **a sample is removed when one
of its near-duplicates ranks above it**, ranking by the richer annotation (more characters in its
answers), then the source listed first in the config, then the smaller id. So no two kept samples
are near-duplicates, and of a cluster the first by that rank is always kept. The passes after it:
:mod:`decontam.removals`.

Cost (``decontam/keys.py`` chooses the bands from it): one sort of the bucket's band rows, then per
key of ``m`` images its ``m (m - 1) / 2`` distances, computed a block of keys of one size at a time
(contiguous XOR and popcount, no per-pair index arrays), and per close pair a few array operations.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from decontam.context import BANDS, FOUND, MULTI, DecontamContext, write_marker
from decontam.phash import distances
from pipelines.stage import Counters, Stage, Unit


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
        table = _matches(rows, ctx, crowded, multi)
        storage.write_parquet(ctx.path(storage, "pairs", f"{unit.name}.parquet"), table)
        storage.write_parquet(ctx.path(storage, "pairs", f"{unit.name}.multi.parquet"),
                              pa.Table.from_pylist(multi, schema=MULTI))
        write_marker(storage, ctx.path(storage, "pairs", f"{unit.name}.json"), {"found": len(table), **crowded})
        return Counters(samples=len(rows), tallies={"index": crowded})


def _matches(rows: pa.Table, ctx: DecontamContext, counted: Counter, multi: list[dict]) -> pa.Table:
    """The findings of the pairs of images sharing a key in ``rows`` (one bucket's band rows); pairs of
    images of two samples with several images each go to ``multi``, to be judged sample by sample."""
    near = ctx.settings.near_duplicates
    same_scope = near.scope == "image_task_language"
    limit = max(near.max_distance if near.enabled else -1, ctx.settings.image_distance)
    keys = rows["key"].to_numpy()
    if len(keys) < 2:
        return FOUND.empty_table()
    # Each file's rows come sorted by key: a stable sort merges the runs.
    by_key = np.argsort(keys, kind="stable")
    keys = keys[by_key]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    several = ends - starts > 1
    if not several.any():
        return FOUND.empty_table()
    hashes = rows["hash"].to_numpy()[by_key]
    sizes = ends - starts
    window = ctx.settings.near_duplicates.window
    crowd = sizes > window
    if crowd.any():
        counted["crowded_keys"] += int(crowd.sum())
        counted["crowded_images"] += int(sizes[crowd].sum())
    close = [list(part) for part in zip(*_close(starts[several & ~crowd], sizes[several & ~crowd], hashes, limit),
                                        strict=True)] or [[], [], []]
    for first, second in _windows(starts[crowd], sizes[crowd], hashes, window, lambda at: _ranks(rows, by_key[at])):
        apart = distances(hashes[first], hashes[second])
        near_enough = apart <= limit
        for kept, values in zip(close, (first, second, apart), strict=True):
            kept.append(values[near_enough])
    if not close[0]:
        return FOUND.empty_table()
    # The rows of the close pairs only, with every column: each pair of images once (several bands of a
    # bucket may hold the same pair).
    first, second = by_key[np.concatenate(close[0])], by_key[np.concatenate(close[1])]
    apart = np.concatenate(close[2]).astype(np.int32)
    confirm = rows["confirm"].to_numpy()
    confirmed = distances(confirm[first], confirm[second]).astype(np.int32)
    loosest = max(_confirm_limit(near.confirm_distance if near.enabled else -1),
                  _confirm_limit(ctx.settings.image_confirm_distance))
    kept = confirmed <= loosest
    first, second, apart, confirmed = first[kept], second[kept], apart[kept], confirmed[kept]
    if not len(first):
        return FOUND.empty_table()
    needed = np.unique(np.r_[first, second])
    sub = rows.take(pa.array(needed))
    first, second = np.searchsorted(needed, first), np.searchsorted(needed, second)
    col = {name: sub[name].to_numpy(zero_copy_only=False) for name in sub.column_names}
    image = (col["file"].astype(np.int64) << 47) | (col["row"].astype(np.int64) << 16) | col["image"].astype(np.int64)
    a, b = image[first], image[second]
    _, once = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0, return_index=True)
    return _findings(col, first[once], second[once], apart[once], confirmed[once], ctx, same_scope, multi)


def _confirm_limit(distance: int | None) -> int:
    """A confirming distance as a bound: none asked (the pHash alone) admits every dHash distance."""
    return 64 if distance is None else distance


_BLOCK = 1 << 16  # hashes in one block of keys of one size (512 KiB: the block stays in cache)


def _close(starts: np.ndarray, sizes: np.ndarray, hashes: np.ndarray, limit: int):
    """The pairs (i < j) within ``limit`` bits in each group (rows ``start .. start + size``), every pair once.
    The groups of one size go a block at a time, laid out ``size x groups`` (a group per column): row ``r``
    against row ``r + t`` for each shift ``t`` is one contiguous XOR, popcount and compare over the
    block (about 4 ns a pair; no per-pair index arrays); a size with few groups compares in one
    ``groups x size x size`` cube."""
    for size in np.unique(sizes).tolist():
        of_size = starts[sizes == size]
        step = max(1, _BLOCK // size)
        for at in range(0, len(of_size), step):
            heads = of_size[at : at + step]
            if len(heads) < 16:
                yield from _cube(heads, size, hashes, limit)
                continue
            block = hashes[heads[None, :] + np.arange(size)[:, None]]
            for shift in range(1, size):
                apart = np.bitwise_count(block[:-shift] ^ block[shift:]).reshape(-1)
                hit = np.flatnonzero(apart <= limit)
                if len(hit):
                    first = heads[hit % len(heads)] + hit // len(heads)
                    yield first, first + shift, apart[hit]


def _cube(heads: np.ndarray, size: int, hashes: np.ndarray, limit: int):
    places = heads[:, None] + np.arange(size)
    block = hashes[places]
    apart = np.bitwise_count(block[:, :, None] ^ block[:, None, :])
    hit = np.flatnonzero((apart <= limit) & np.triu(np.ones((size, size), dtype=bool), 1))
    group, i, j = np.unravel_index(hit, apart.shape)
    yield places[group, i], places[group, j], apart.reshape(-1)[hit]


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


def _findings(col, i: np.ndarray, j: np.ndarray, apart: np.ndarray, confirmed: np.ndarray, ctx: DecontamContext,
              same_scope: bool, multi: list[dict]) -> pa.Table:
    """What the pairs ``(i, j)`` within the distance (pHash ``apart``, dHash ``confirmed``) remove, as arrays:
    nothing (two evaluation images), the training row near an evaluation image (``contamination``), or
    the lower-ranked of two training rows (``near_duplicate``); pairs of two samples of several images
    each go to ``multi``."""
    file = col["file"]
    held_i, held_j = file[i] < 0, file[j] < 0
    settings = ctx.settings
    leak = (held_i != held_j) & (apart <= settings.image_distance)
    leak &= confirmed <= _confirm_limit(settings.image_confirm_distance)
    train, held = np.where(held_i, j, i)[leak], np.where(held_i, i, j)[leak]
    near = settings.near_duplicates
    pair = ~held_i & ~held_j & (col["count"][i] == col["count"][j]) & (apart <= near.max_distance)
    pair &= confirmed <= _confirm_limit(near.confirm_distance)
    pair &= near.enabled & ((file[i] != file[j]) | (col["row"][i] != col["row"][j]))
    if same_scope:
        pair &= col["scope"][i] == col["scope"][j]
    several = pair & (col["count"][i] > 1)  # two samples of several images each: judged sample by sample
    for a, b, d in zip(i[several].tolist(), j[several].tolist(), apart[several].tolist(), strict=True):
        multi += [_image_pair(col, a, b, d), _image_pair(col, b, a, d)]
    one = pair & ~several
    a, b = i[one], j[one]
    richness, order, ids = col["richness"], col["order"], col["id"]
    a_first = (richness[a] > richness[b]) | ((richness[a] == richness[b]) & (
        (order[a] < order[b]) | ((order[a] == order[b]) & (ids[a].astype(str) < ids[b].astype(str)))))
    winner, loser = np.where(a_first, a, b), np.where(a_first, b, a)
    eval_names = np.array(ctx.eval_sets or ("",), dtype=object)
    rows = np.r_[train, loser]
    n_leak, n_dup = len(train), len(loser)
    return pa.table({
        "file": file[rows].astype(np.int32), "row": col["row"][rows].astype(np.int32),
        "id": pa.array(ids[rows].astype(str), pa.string()),
        "reason": pa.array(["contamination"] * n_leak + ["near_duplicate"] * n_dup, pa.string()),
        "kept": pa.array(np.r_[np.full(n_leak, ""), ids[winner].astype(str)], pa.string()),
        "eval_set": pa.array(np.r_[eval_names[-1 - file[held]].astype(str) if n_leak else np.array([], str),
                                   np.full(n_dup, "")], pa.string()),
        "eval_item": pa.array(np.r_[ids[held].astype(str), np.full(n_dup, "")], pa.string()),
        "distance": np.r_[apart[leak], apart[one]].astype(np.int32),
        "ngram": pa.array([""] * (n_leak + n_dup), pa.string())}, schema=FOUND)


def _image_pair(col, i: int, j: int, distance: int) -> dict:
    own = {name: col[name][i].item() for name in ("file", "row", "image", "count", "richness", "order")}
    other = {f"other_{name}": col[name][j].item() for name in ("file", "row", "image", "richness", "order")}
    own["id"], other["other_id"] = str(col["id"][i]), str(col["id"][j])
    return {**own, **other, "distance": distance}
