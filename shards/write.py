"""From task tables to finished shards: plan the mixture, stream it into tars, write the manifest.

>>> from shards.mix import MixSettings
>>> from shards import ShardSettings, mix_and_write
>>> mix_and_write("/data/mix", "/data/mix/shards", MixSettings(total_samples=50_000), ShardSettings())  # doctest: +SKIP

The output directory is a local folder or any fsspec URI (``s3://bucket/run/shards``); the
task tables and images are read from the storage root, wherever it is.

Resuming: shards already in the output directory under their final names are complete (they
were moved into place). A rerun plans the same mixture, checks that each existing shard holds
exactly the samples the plan puts there (else it refuses: the directory belongs to another
mixture), keeps them and writes the rest. Since shard boundaries depend only on the plan and the
sizes, the result is byte-identical to an uninterrupted run. The manifest is written last and
commits the directory: until it is there, readers take the directory as unfinished.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from pydantic import Field

from pipelines._model import ConfigModel
from pipelines.layout.raw import RAW_DIR, download_drops, resolve_uri
from pipelines.progress import Progress
from pipelines.storage import Storage
from shards.location import open_directory, options_for
from shards.manifest import FORMAT, write_manifest
from shards.mix import MixPlan, MixSettings, plan_mixture
from shards.reader import ShardReader
from shards.schema import encode_sample, image_member
from shards.writer import ShardInfo, ShardWriter, shard_name


class ShardSettings(ConfigModel):
    """How the mixture is cut into shards."""

    prefix: str = Field("mix", pattern=r"^[A-Za-z0-9_-]+$", description="shards are <prefix>-%06d.tar")
    max_samples: int = Field(10_000, ge=1, description="samples per shard at most")
    max_bytes: int = Field(
        1 << 30, ge=1 << 16, description="bytes per shard at most (one bigger sample excepted)"
    )
    window: int = Field(4096, ge=1, description="samples whose table rows are fetched together")
    table_cache: int = Field(16, ge=1, description="task tables kept decoded in memory at once")
    check_image_sha256: bool = Field(True, description="re-hash every image read, against the task table")
    report: bool = Field(True, description="write report.png and report.md beside the manifest")


class ShardWriteError(RuntimeError):
    """The shards cannot be written as planned (changed inputs, a foreign output directory)."""


def mix_and_write(
    root: str | Storage,
    out_dir: str | Path | Storage,
    mix: MixSettings,
    shards: ShardSettings | None = None,
    config_hash: str | None = None,
    stage_drops: dict[str, dict] | None = None,
    out_options: dict[str, Any] | None = None,
) -> dict:
    """Plan the mixture from ``<root>/tasks`` and write it as shards + ``manifest.json`` to ``out_dir``.

    ``config_hash`` is the mixture config's fingerprint; ``stage_drops`` adds other stages'
    counters (``{"ocr": {...}, "translate": {...}}``) to the manifest. ``out_options`` are the
    fsspec options of ``out_dir``; by default those of ``root`` when both are on the same kind of
    filesystem. Returns the manifest.
    """
    storage = root if isinstance(root, Storage) else Storage(root)
    shards = shards or ShardSettings()
    out = open_directory(out_dir, out_options if out_options is not None else options_for(out_dir, storage))
    out.makedirs(out.root)
    plan = plan_mixture(storage, mix)
    done, position = _resume(out, shards.prefix, plan)
    writer = ShardWriter(out, shards.prefix, shards.max_samples, shards.max_bytes, start_shard=len(done))
    written = Progress("mix", total=len(plan) - position, unit="samples")
    with writer:
        for key, members in _samples(storage, plan, position, shards):
            writer.write(key, members)
            written.advance(samples=1)
    written.done()
    infos = done + writer.shards
    settings_hash = hashlib.sha256(f"{mix.fingerprint()}:{_fingerprint(shards)}".encode()).hexdigest()
    drops = {"download": _all_download_drops(storage), **plan.drops, **(stage_drops or {})}
    manifest = {
        "format": FORMAT,
        "config_hash": config_hash or settings_hash,
        "settings_hash": settings_hash,
        "seed": mix.seed,
        "total_samples": len(plan),
        "tasks": plan.tasks,
        "sources": plan.sources,
        "languages": plan.languages,
        "shards": [
            {"name": i.name, "samples": i.samples, "bytes": i.bytes, "sha256": i.sha256} for i in infos
        ],
        "drops": drops,
    }
    if shards.report:
        from shards.report import write_report

        write_report(out, manifest)
    write_manifest(out, manifest)
    return manifest


def _fingerprint(settings: ShardSettings) -> str:
    return json.dumps(
        settings.model_dump(mode="json", include={"prefix", "max_samples", "max_bytes"}), sort_keys=True
    )


def _resume(out: Storage, prefix: str, plan: MixPlan) -> tuple[list[ShardInfo], int]:
    """Keep the complete shards a killed run left; check they are this plan's. Returns them and where to go on.

    Each kept shard is read once: its keys, size and sha256 come from the same pass.
    """
    for stale in out.glob(out.path(f".{prefix}-*.tar.tmp")):
        out.fs.rm_file(stale)
    present = {posixpath.basename(path) for path in out.glob(out.path(f"{prefix}-*.tar"))}
    done: list[ShardInfo] = []
    position = 0
    while (name := shard_name(prefix, len(done))) in present:
        path = out.path(name)
        try:
            with ShardReader(path, out.fs) as reader:
                keys = [key for key, _ in reader]
                sha256 = reader.sha256()
        except (tarfile.TarError, EOFError) as err:
            raise ShardWriteError(f"{out.uri(path)} is damaged ({err}): remove it and rerun") from err
        expected = plan.ids[position : position + len(keys)].to_pylist()
        if keys != expected:
            raise ShardWriteError(
                f"{out.uri(path)} does not hold the samples this mixture puts there: it was written with "
                "other inputs or settings. Write to an empty directory, or remove the old shards."
            )
        done.append(ShardInfo(name, len(keys), reader.size, sha256))
        position += len(keys)
    for extra in sorted(present):
        if extra > shard_name(prefix, len(done)):
            raise ShardWriteError(
                f"{out.uri(out.path(extra))} is not part of a consecutive run of shards; remove it first"
            )
    return done, position


def _samples(storage: Storage, plan: MixPlan, start: int, settings: ShardSettings):
    """``(key, members)`` of each planned sample from ``start`` on, fetching rows window by window."""
    tables = _TableCache(storage, plan.files, settings.table_cache)
    images = _ImageFiles(storage)
    try:
        for window_start in range(start, len(plan), settings.window):
            window = slice(window_start, min(window_start + settings.window, len(plan)))
            rows = tables.rows(plan.file_index[window], plan.row_index[window])
            ids = plan.ids[window].to_pylist()
            for row, sample_id, repeat in zip(rows, ids, plan.repeat[window].tolist(), strict=True):
                members = []
                for index, image in enumerate(row["images"]):
                    data = images.read(image["uri"], image["offset"], image["size"])
                    if settings.check_image_sha256 and hashlib.sha256(data).hexdigest() != image["sha256"]:
                        raise ShardWriteError(
                            f"image {index} of {row['id']} ({image['uri']} @ {image['offset']}) no longer "
                            "matches its task table's sha256: rebuild the task tables of that source"
                        )
                    members.append((image_member(index, image["format"]), data))
                yield sample_id, [*members, ("json", encode_sample(row, sample_id, repeat))]
    finally:
        images.close()


class _TableCache:
    """Task tables decoded on demand, the least recently used dropped beyond ``size``."""

    def __init__(self, storage: Storage, files: list[str], size: int):
        self.storage, self.files, self.size = storage, files, size
        self.cache: OrderedDict[int, list[dict]] = OrderedDict()

    def rows(self, file_index: np.ndarray, row_index: np.ndarray) -> list[dict]:
        out: list[dict | None] = [None] * len(file_index)
        for file in np.unique(file_index).tolist():
            table = self._table(file)
            for slot in np.flatnonzero(file_index == file).tolist():
                out[slot] = table[row_index[slot]]
        return out

    def _table(self, file: int) -> list[dict]:
        if file in self.cache:
            self.cache.move_to_end(file)
            return self.cache[file]
        table = pq.read_table(self.files[file], filesystem=self.storage.fs).to_pylist()
        self.cache[file] = table
        if len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return table


class _ImageFiles:
    """Open files of the images (raw tars, image folders), a bounded number at a time."""

    def __init__(self, storage: Storage, size: int = 64):
        self.storage, self.size = storage, size
        self.handles: OrderedDict[str, object] = OrderedDict()

    def read(self, uri: str, offset: int, size: int) -> bytes:
        handle = self.handles.get(uri)
        if handle is None:
            handle = self.storage.fs.open(resolve_uri(self.storage, uri), "rb")
            self.handles[uri] = handle
            if len(self.handles) > self.size:
                self.handles.popitem(last=False)[1].close()
        else:
            self.handles.move_to_end(uri)
        handle.seek(offset)
        data = handle.read(size)
        if len(data) != size:
            raise ShardWriteError(f"{uri}: expected {size} bytes at offset {offset}, found {len(data)}")
        return data

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()


def _all_download_drops(storage: Storage) -> dict[str, dict[str, int]]:
    sources = storage.glob(storage.path(RAW_DIR, "*"))
    return {
        path.rstrip("/").split("/")[-1]: download_drops(storage, path.rstrip("/").split("/")[-1])
        for path in sources
    }
