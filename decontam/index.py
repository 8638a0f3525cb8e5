"""The first passes: hash every evaluation set, and every task table's images and texts.

``eval`` (a unit per evaluation set) writes ``eval/<set>.bands.parquet`` (its images' band rows) and
``eval/<set>.ngrams.parquet`` (its questions' and answers' n-gram hashes, with the n-gram and item).
``hash`` (a unit per task table) writes ``bands/<file>.parquet``, its images' band rows grouped by
bucket, and ``text/<file>.parquet``, its rows whose text shares an n-gram with an evaluation set.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from decontam.context import BANDS, FOUND, NGRAMS, DecontamContext, write_grouped, write_marker
from decontam.evalsets import read_items
from decontam.keys import keys as index_keys
from decontam.phash import hashes as image_hashes
from decontam.text import hashes
from pipelines.layout.raw import resolve_uri
from pipelines.phash import to_unsigned
from pipelines.stage import Counters, Stage, Unit
from pipelines.storage import Storage


def band_rows(ctx: DecontamContext, hashed: list[tuple[int, int]], file: list[int], row: list[int], ids: list[str],
              task: list[str], language: list[str], richness: list[int], order: list[int], image: list[int],
              count: list[int]) -> pa.Table:
    """Each image's row repeated once per band of the index, with its key and bucket; ``hashed``: each image's
    (pHash, dHash); ``image`` is its place among its sample's ``count`` images."""
    masks = _masks(ctx.settings, ctx.images)
    bands = len(masks)
    both = np.array(hashed, dtype=np.uint64).reshape(-1, 2)
    values = both[:, 0]
    keys = index_keys(values, masks).reshape(-1)
    take = np.repeat(np.arange(len(values)), bands)
    columns = {"bucket": (keys % np.uint64(ctx.buckets)).astype(np.int32), "key": keys, "hash": values[take],
               "confirm": both[:, 1][take]}
    for name, value, kind in (("file", file, np.int32), ("row", row, np.int32), ("richness", richness, np.int64),
                              ("order", order, np.int32), ("image", image, np.int16), ("count", count, np.int16)):
        columns[name] = np.asarray(value, dtype=kind)[take]
    columns["id"] = pa.array(ids, pa.string()).take(pa.array(take))
    scopes = {pair: _scope(*pair) for pair in set(zip(task, language, strict=True))}
    columns["scope"] = np.array([scopes[pair] for pair in zip(task, language, strict=True)], dtype=np.int64)[take]
    return pa.table(columns, schema=BANDS)


def _scope(task: str, language: str) -> int:
    """A sample's task and language as one number: equal for equal pairs, in every worker and run."""
    return int.from_bytes(hashlib.blake2b(f"{task}\0{language}".encode(), digest_size=8).digest(), "big", signed=True)


_MASKS: dict[tuple, np.ndarray] = {}


def _masks(settings, images: int) -> np.ndarray:
    key = (settings.model_dump_json(), images)
    if key not in _MASKS:
        _MASKS.clear()
        _MASKS[key] = settings.masks(images)
    return _MASKS[key]


class EvalIndex(Stage):
    """Per evaluation set: its images' hashes (as band rows) and its texts' n-grams."""

    name = "decontam-eval"
    unit_kind = "evaluation sets"

    def units(self, ctx):
        for number, spec in enumerate(ctx.settings.evaluation_sets):
            yield Unit(spec.name, (number,), group=spec.name)

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(ctx.path(storage, "eval", f"{unit.name}.json"))

    def run_unit(self, unit, ctx):
        (number,) = unit.spec
        spec = ctx.settings.evaluation_sets[number]
        storage = ctx.storage()
        drops: Counter = Counter()
        hashed, rows, items, grams, places, counts = [], [], [], [], [], []
        items_read = 0
        for position, item in enumerate(read_items(spec)):
            items_read += 1
            for place, data in enumerate(item.images):
                value = image_hashes(data)
                if value is None:
                    drops["eval_image_undecodable"] += 1
                    continue
                hashed.append(value)
                rows.append(position)
                items.append(item.item)
                places.append(place)
                counts.append(len(item.images))
            values, texts = hashes(item.texts, ctx.settings.ngram)
            grams += [(h, item.item, g) for h, g in zip(values.tolist(), texts, strict=True)]
        n = len(hashed)
        table = band_rows(ctx, hashed, [-1 - number] * n, rows, items, [""] * n, [""] * n, [0] * n, [-1] * n,
                          places, counts)
        storage.write_parquet(ctx.path(storage, "eval", f"{unit.name}.bands.parquet"), table)
        ngrams = pa.table({"hash": pa.array([g[0] for g in grams], pa.uint64()),
                           "eval_set": pa.array([spec.name] * len(grams), pa.string()),
                           "eval_item": [g[1] for g in grams], "ngram": [g[2] for g in grams]}, schema=NGRAMS)
        storage.write_parquet(ctx.path(storage, "eval", f"{unit.name}.ngrams.parquet"), ngrams)
        write_marker(storage, ctx.path(storage, "eval", f"{unit.name}.json"),
                     {"items": items_read, "images": n, "ngrams": len(grams), "drops": dict(drops)})
        return Counters(samples=items_read, drops=drops)


_NGRAMS: dict[tuple, tuple[np.ndarray, pa.Table]] = {}


def _eval_ngrams(storage: Storage, work: str, names: tuple[str, ...]) -> tuple[np.ndarray, pa.Table]:
    """Every evaluation n-gram of the run: sorted hashes, and the table to name a match (read once per worker)."""
    key = (storage.root_uri(), repr(sorted(storage.options.items())), work, names)
    if key not in _NGRAMS:
        _NGRAMS.clear()
        _NGRAMS[key] = _read_ngrams(storage, work, names)
    return _NGRAMS[key]


def _read_ngrams(storage: Storage, work: str, names: tuple[str, ...]) -> tuple[np.ndarray, pa.Table]:
    paths = [storage.path(work, "eval", f"{name}.ngrams.parquet") for name in names]
    table = pa.concat_tables([pq.read_table(p, filesystem=storage.fs) for p in paths]) if paths else NGRAMS.empty_table()
    table = table.sort_by("hash")
    return table["hash"].to_numpy(), table


class HashTables(Stage):
    """Per task table: its images' pHashes as band rows, and its rows whose text an evaluation set holds."""

    name = "decontam-hash"
    unit_kind = "task tables"

    def __init__(self, tables: list[tuple[str, str, int]]):
        self.tables = tables  # (dataset, path, order of its source) per file number

    def units(self, ctx):
        for file, (dataset, path, order) in enumerate(self.tables):
            yield Unit(f"{file:06d}", (file, dataset, path, order), group=dataset)

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(ctx.path(storage, "hashed", f"{unit.name}.json"))

    def run_unit(self, unit, ctx):
        file, dataset, path, order = unit.spec
        storage = ctx.storage()
        parquet = pq.ParquetFile(path, filesystem=storage.fs)
        columns = ["id", "task", "language", "images", "conversations"]
        stored = [c for c in ("image_phash", "image_dhash") if c in parquet.schema_arrow.names]
        table = parquet.read(columns=columns + stored)
        drops: Counter = Counter()
        hashed = _stored_hashes(table) if len(stored) == 2 else [None] * len(table)
        images = _hash_images(storage, table["images"].to_pylist(), hashed, drops) if _images_wanted(ctx) else {}
        cols = {name: table[name].to_pylist() for name in ("id", "task", "language")}
        conversations = table["conversations"].to_pylist()
        out = {k: [] for k in ("hashed", "file", "row", "ids", "task", "language", "richness", "order", "image",
                               "count")}
        for row, values in images.items():
            richness = sum(len(turn["value"]) for turn in conversations[row] if turn["from"] == "gpt")
            for place, value in enumerate(values):
                for key, v in (("hashed", value), ("file", file), ("row", row), ("ids", cols["id"][row]),
                               ("task", cols["task"][row]), ("language", cols["language"][row]),
                               ("richness", richness), ("order", order), ("image", place), ("count", len(values))):
                    out[key].append(v)
        write_grouped(storage, ctx.path(storage, "bands", f"{unit.name}.parquet"), band_rows(ctx, **out), "bucket", "key")
        found = _text_matches(storage, ctx, file, cols["id"], conversations) if ctx.eval_sets else FOUND.empty_table()
        storage.write_parquet(ctx.path(storage, "text", f"{unit.name}.parquet"), found)
        write_marker(storage, ctx.path(storage, "hashed", f"{unit.name}.json"),
                     {"rows": len(table), "images": len(out["hashed"]), "text_matches": len(found)})
        return Counters(samples=len(table), drops=drops)


def _images_wanted(ctx: DecontamContext) -> bool:
    return ctx.settings.near_duplicates.enabled or bool(ctx.settings.evaluation_sets)


def _stored_hashes(table: pa.Table) -> list[list[tuple[int, int]] | None]:
    """Each row's (pHash, dHash) per image as the stage that read the images stored them (int64), or None."""
    return [None if p is None or d is None or len(p) != len(d) else
            [(to_unsigned(a), to_unsigned(b)) for a, b in zip(p, d, strict=True)]
            for p, d in zip(table["image_phash"].to_pylist(), table["image_dhash"].to_pylist(), strict=True)]


def _hash_images(storage: Storage, images: list[list[dict]], hashed: list[list[tuple[int, int]] | None],
                 drops: Counter) -> dict[int, list[tuple[int, int]]]:
    """Row -> the (pHash, dHash) of each of its images: the stored ones (``hashed``) where the stage that read
    them hashed them, else decoded here, each file opened once, each distinct image hashed once; a row
    with an image that does not decode is left out, counted."""
    by_sha: dict[str, tuple[int, int] | None] = {}
    handles: dict[str, object] = {}
    out: dict[int, list[tuple[int, int]]] = {}
    try:
        for row, refs in enumerate(images):
            if hashed[row] is not None and len(hashed[row]) == len(refs or []):
                if hashed[row]:
                    out[row] = hashed[row]
                continue
            values = []
            for ref in refs or []:
                if ref["sha256"] not in by_sha or not ref["sha256"]:
                    handle = handles.get(ref["uri"])
                    if handle is None:
                        handle = handles[ref["uri"]] = storage.fs.open(resolve_uri(storage, ref["uri"]), "rb")
                    handle.seek(ref["offset"])
                    by_sha[ref["sha256"]] = image_hashes(handle.read(ref["size"]))
                values.append(by_sha[ref["sha256"]])
            if any(v is None for v in values):
                drops["image_unhashable"] += 1
            elif values:
                out[row] = values
    finally:
        for handle in handles.values():
            handle.close()
    return out


def _text_matches(storage: Storage, ctx: DecontamContext, file: int, ids: list[str], conversations) -> pa.Table:
    """Rows of one table sharing an n-gram with an evaluation question or answer: the first such n-gram."""
    sorted_hashes, table = _eval_ngrams(storage, ctx.work, ctx.eval_sets)
    found = []
    for row, turns in enumerate(conversations):
        values, grams = hashes([turn["value"] for turn in turns], ctx.settings.ngram)
        if not len(values) or not len(sorted_hashes):
            continue
        at = np.searchsorted(sorted_hashes, values).clip(0, len(sorted_hashes) - 1)
        hit = np.flatnonzero(sorted_hashes[at] == values)
        if len(hit):
            match = table.slice(int(at[hit[0]]), 1).to_pylist()[0]
            found.append({"file": file, "row": row, "id": ids[row], "reason": "contamination", "kept": "",
                          "eval_set": match["eval_set"], "eval_item": match["eval_item"], "distance": -1,
                          "ngram": grams[hit[0]]})
    return pa.Table.from_pylist(found, schema=FOUND)
