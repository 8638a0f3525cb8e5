"""What every decontamination pass shares: its context, the row schemas between passes, file helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from decontam.settings import DecontamSettings
from pipelines.stage import StageContext
from pipelines.storage import Storage

# One row per (image, band): what a bucket unit compares. Evaluation images have file = -1 - set number;
# hash: the image's pHash (what the keys index), confirm: its dHash; scope: a 64-bit hash of the sample's
# task and language.
BANDS = pa.schema([("bucket", pa.int32()), ("key", pa.uint64()), ("hash", pa.uint64()), ("confirm", pa.uint64()),
                   ("file", pa.int32()),
                   ("row", pa.int32()), ("id", pa.string()), ("scope", pa.int64()),
                   ("richness", pa.int64()), ("order", pa.int32()), ("image", pa.int16()),
                   ("count", pa.int16())])
# One row per finding against a training row (a sample may be found several times; the last pass keeps one).
FOUND = pa.schema([("file", pa.int32()), ("row", pa.int32()), ("id", pa.string()), ("reason", pa.string()),
                   ("kept", pa.string()), ("eval_set", pa.string()), ("eval_item", pa.string()),
                   ("distance", pa.int32()), ("ngram", pa.string())])
# One row per pair of images of two samples with several images each (both ways): the removals pass
# judges the samples (every image of each within the distance of one of the other's).
MULTI = pa.schema([("file", pa.int32()), ("row", pa.int32()), ("image", pa.int16()), ("count", pa.int16()),
                   ("id", pa.string()), ("richness", pa.int64()), ("order", pa.int32()),
                   ("other_file", pa.int32()), ("other_row", pa.int32()), ("other_image", pa.int16()),
                   ("other_id", pa.string()), ("other_richness", pa.int64()), ("other_order", pa.int32()),
                   ("distance", pa.int32())])
NGRAMS = pa.schema([("hash", pa.uint64()), ("eval_set", pa.string()), ("eval_item", pa.string()),
                    ("ngram", pa.string())])


@dataclass(frozen=True)
class DecontamContext(StageContext):
    """The storage root, the run's work folder (``_decontam/<hash>``) and the settings; units carry their inputs."""

    work: str = ""
    settings: DecontamSettings = DecontamSettings()
    buckets: int = 1
    files: int = 0  # task tables in the run (hash and removal units are numbered 0..files-1)
    eval_sets: tuple[str, ...] = ()
    images: int = 0  # about how many images the run compares (the task tables' rows): sizes the index's keys

    def path(self, storage: Storage, *parts: str) -> str:
        return storage.path(self.work, *parts)


def write_marker(storage: Storage, path: str, record: dict) -> None:
    storage.write_bytes(path, json.dumps(record, sort_keys=True).encode())


def read_markers(storage: Storage, paths: list[str]) -> list[dict]:
    if not paths:
        return []
    data = storage.fs.cat(paths)
    return [json.loads(data[path]) for path in paths]


def write_grouped(storage: Storage, path: str, table: pa.Table, column: str, then: str | None = None) -> None:
    """``table`` sorted by ``column`` (then by ``then``), one row group per value of ``column`` (a reader of
    one value reads one group); written under a temporary name and moved into place."""
    import pyarrow.parquet as pq

    table = table.sort_by([(column, "ascending")] + ([(then, "ascending")] if then else []))
    values = table[column].to_numpy()
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]).tolist() if len(values) else []
    temporary = f"{path}.tmp"
    storage.makedirs(path.rsplit("/", 1)[0])
    with storage.fs.open(temporary, "wb") as f, pq.ParquetWriter(f, table.schema) as writer:
        if not starts:
            writer.write_table(table)
        for start, end in zip(starts, [*starts[1:], len(values)] if starts else [], strict=True):
            writer.write_table(table.slice(start, end - start), row_group_size=end - start)
    storage.fs.mv(temporary, path)
