"""The OCR corpus table: one Parquet file per raw shard under ``<root>/ocr/<source>/``.

One row per image of the raw shard, dropped ones included (with their ``drop_reason``), so a
rerun or an audit can tell that every sample was seen exactly once. Columns (:data:`SCHEMA`):

=================  ==========================================================================
``key``            img2dataset sample key (unique within the source)
``source``         the source name (``wukong``, ``laion_coco``...)
``shard``          raw shard id (``00000``)
``language``       language of the text read (from the source: zh for Wukong, en for LAION-COCO; for
                   a source of ``language: auto``, by the script of the text read: ``ocr.shard.text_language``)
``image_uri``      the raw tar holding the image, relative to the storage root
``image_offset``   byte offset of the image inside that tar
``image_size``     byte length of the image
``image_format``   ``jpg``, ``png``... (the tar member's extension)
``image_sha256``   hex sha256 of the image bytes
``image_phash``    the picture's 64-bit pHash as a signed int64 (``pipelines.phash.to_signed``), computed by
                   the OCR actor from the picture it decoded, in a run that decontaminates; null otherwise,
                   and when the image does not decode; absent from corpus files of older runs
``image_dhash``    its dHash, likewise (``pipelines.phash.hashes_of``)
``url``            where img2dataset fetched the image
``width, height``  pixels (0 when the image could not be decoded)
``lines``          kept lines in reading order: ``{text, quad: [[x, y] x4] pixels, score}``
``text``           the kept lines joined by newlines, in reading order
``text_area``      fraction of the image covered by the kept lines' quadrilaterals
``low_score_lines``  lines dropped for a score below ``min_line_score``
``drop_reason``    null when the sample is kept; else one of :data:`ocr.filters.IMAGE_REASONS`
``engine`` ...     ``engine``, ``engine_version``, ``det_model``, ``rec_model``: provenance
=================  ==========================================================================

The file's Parquet metadata holds ``vlmix.ocr.stats``: the shard's counters as JSON.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.storage import Storage

OCR_DIR = "ocr"
STATS_KEY = b"vlmix.ocr.stats"
STATS_FILE = "stats.json"

LINE = pa.struct([("text", pa.string()), ("quad", pa.list_(pa.list_(pa.float32()))), ("score", pa.float32())])
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source", pa.string()),
        ("shard", pa.string()),
        ("language", pa.string()),
        ("image_uri", pa.string()),
        ("image_offset", pa.int64()),
        ("image_size", pa.int64()),
        ("image_format", pa.string()),
        ("image_sha256", pa.string()),
        ("image_phash", pa.int64()),
        ("image_dhash", pa.int64()),
        ("url", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("lines", pa.list_(LINE)),
        ("text", pa.string()),
        ("text_area", pa.float32()),
        ("low_score_lines", pa.int32()),
        ("drop_reason", pa.string()),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("det_model", pa.string()),
        ("rec_model", pa.string()),
    ]
)


def shard_path(storage: Storage, source: str, shard: str) -> str:
    return storage.path(OCR_DIR, source, f"{shard}.parquet")


def finished_shards(storage: Storage, source: str) -> set[str]:
    """Shards whose corpus file was renamed into place (the completion marker)."""
    paths = storage.glob(storage.path(OCR_DIR, source, "*.parquet"))
    return {p.rsplit("/", 1)[-1][: -len(".parquet")] for p in paths}


def shard_stats(table: pa.Table) -> dict:
    """Counters of one corpus shard: images read, kept, dropped by reason, lines dropped by reason."""
    reasons = table.column("drop_reason").to_pylist()
    dropped: dict[str, int] = {}
    for reason in reasons:
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
    return {
        "images": table.num_rows,
        "kept": reasons.count(None),
        "dropped": dropped,
        "lines_kept": sum(len(x) for x in table.column("lines").to_pylist()),
        "lines_dropped": {"low_score": int(pc.sum(table.column("low_score_lines")).as_py() or 0)},
    }


def write_shard(storage: Storage, source: str, shard: str, table: pa.Table) -> str:
    """Write one corpus shard, sorted by key, under a temporary name; the rename marks it complete."""
    table = table.sort_by("key")
    metadata = {STATS_KEY: json.dumps(shard_stats(table)).encode()}
    table = table.replace_schema_metadata(metadata)
    path = shard_path(storage, source, shard)
    storage.write_parquet(path, table)
    return path


def read_shard(storage: Storage, source: str, shard: str) -> pa.Table:
    return storage.read_parquet(shard_path(storage, source, shard))


def merge_stats(parts: list[dict]) -> dict:
    """Sum shard counters into the stage's counters."""
    total: dict = {
        "shards": len(parts),
        "images": 0,
        "kept": 0,
        "dropped": {},
        "lines_kept": 0,
        "lines_dropped": {},
    }
    for part in parts:
        for name in ("images", "kept", "lines_kept"):
            total[name] += part[name]
        for group in ("dropped", "lines_dropped"):
            for reason, n in part[group].items():
                total[group][reason] = total[group].get(reason, 0) + n
    return total


def write_stage_stats(storage: Storage, source: str, extra: dict | None = None) -> dict:
    """Recompute ``<root>/ocr/<source>/stats.json`` from every finished shard's metadata."""
    parts = []
    for shard in sorted(finished_shards(storage, source)):
        meta = pq.read_metadata(shard_path(storage, source, shard), filesystem=storage.fs).metadata or {}
        parts.append(json.loads(meta[STATS_KEY]))
    stats = {**merge_stats(parts), **(extra or {})}
    storage.write_json(storage.path(OCR_DIR, source, STATS_FILE), stats)
    return stats
