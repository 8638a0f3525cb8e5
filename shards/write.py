"""From task tables to finished shards: plan the mixture, write its blocks in parallel, write the manifest.

>>> from shards.mix import MixSettings
>>> from shards import ShardSettings, mix_and_write
>>> mix_and_write("/data/mix", "/data/mix/shards", MixSettings(total_samples=50_000), ShardSettings())  # doctest: +SKIP

The output directory is a local folder or any fsspec URI (``s3://bucket/run/shards``); the
task tables and images are read from the storage root, wherever it is.

The mixture's positions are cut into **blocks** of ``shards_per_task * max_samples`` samples;
each block is one unit of two passes of the stage contract (:mod:`pipelines.stage`), run as Ray
tasks: ``cut`` reads its picks' sizes and counts the shards the block needs (a shard closes
before a sample would take it past ``max_samples`` or ``max_bytes``), the driver numbers the
shards from those counts, and ``write`` fetches the block's images, writes its shards under
their global names and records them. A shard never spans two blocks, so the last shard of a
block can be smaller; the shards depend on the plan and the settings only, never on how many
workers wrote them.

Resuming: a block is done when its record (``<out>/.vlmix/blocks/<n>.json``) exists; a killed
block is written again, to the same bytes. ``<out>/.vlmix/plan.json`` names the plan the
directory belongs to (settings and the inputs' content, known once the mixture is planned): a
directory of another mixture (other inputs or settings) is refused. The
manifest is written last, from the blocks' records, and commits the directory: until it is
there, readers take the directory as unfinished. Then the records and the plan's work folder
(``<root>/_mix/...``) are removed.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
from pydantic import Field

from pipelines._model import ConfigModel
from pipelines.layout.raw import resolve_uri
from pipelines.stage import Counters, Stage, Unit, execute
from pipelines.storage import Storage
from shards.location import open_directory, options_for
from shards.manifest import FORMAT, MANIFEST, read_manifest, write_manifest
from shards.mix import MixSettings
from shards.passes import MixContext, read_markers, write_marker
from shards.plan import MixPlan, plan_inputs, plan_mixture
from shards.schema import image_member
from shards.writer import ShardInfo, ShardWriter, finished_size

STATE = ".vlmix"


class ShardSettings(ConfigModel):
    """How the mixture is cut into shards."""

    prefix: str = Field("mix", pattern=r"^[A-Za-z0-9_-]+$", description="shards are <prefix>-%06d.tar")
    max_samples: int = Field(10_000, ge=1, description="samples per shard at most")
    max_bytes: int = Field(
        1 << 30, ge=1 << 16, description="bytes per shard at most (one bigger sample excepted)"
    )
    shards_per_task: int = Field(
        10, ge=1, description="shards one writer task writes: a block of shards_per_task * max_samples samples"
    )
    check_image_sha256: bool = Field(True, description="re-hash every image read, against the task table")
    report: bool = Field(True, description="write report.png and report.md beside the manifest")
    keep_work: bool = Field(False, description="keep the plan's work folder <root>/_mix/<hash> after the manifest")


class ShardWriteError(RuntimeError):
    """The shards cannot be written as planned (changed inputs, a foreign output directory)."""


@dataclass(frozen=True)
class WriteContext:
    mix: MixContext
    out: str
    out_options: dict
    settings: ShardSettings
    routed: tuple[int, ...]  # the route units with picks: their files hold the blocks' rows

    def out_storage(self) -> Storage:
        return Storage(self.out, self.out_options)

    def rows(self, block: int, columns: list[str] | None = None):
        storage = self.mix.storage()
        paths = [self.mix.path(storage, "route", f"{f:06d}.parquet") for f in self.routed]
        table = pads.dataset(paths, format="parquet", filesystem=storage.fs).to_table(
            columns=columns, filter=pc.field("block") == block)
        table = table.sort_by("position")
        start = block * self.mix.block
        expected = min(self.mix.block, self.mix.total - start)
        if len(table) != expected or (expected and not np.array_equal(
                table["position"].to_numpy(), np.arange(start, start + expected))):
            raise ShardWriteError(f"block {block}: the routed picks hold {len(table)} of its {expected} positions; "
                                  f"the plan's work folder {self.mix.work} is damaged: remove it and rerun")
        return table


class CutPass(Stage):
    """How many shards each block needs, from its picks' sizes alone."""

    name = "mix-cut"

    def __init__(self, blocks: int):
        self.blocks = blocks

    def units(self, ctx):
        for block in range(self.blocks):
            yield Unit(f"{block:06d}", (block,))

    def marker(self, storage: Storage, ctx: WriteContext, unit: Unit) -> str:
        return ctx.mix.path(storage, "cuts", f"{unit.name}.json")

    def done(self, unit, ctx):
        storage = ctx.mix.storage()
        return storage.exists(self.marker(storage, ctx, unit))

    def run_unit(self, unit, ctx):
        (block,) = unit.spec
        sizes = ctx.rows(block, ["position", "bytes"])["bytes"].to_pylist()
        shards, samples, written = 0, 0, 0
        for size in sizes:  # the writer's own rule (ShardWriter.write), so both cut in the same places
            if shards == 0 or samples >= ctx.settings.max_samples or finished_size(written + size) > ctx.settings.max_bytes:
                shards, samples, written = shards + 1, 0, 0
            samples, written = samples + 1, written + size
        storage = ctx.mix.storage()
        write_marker(storage, self.marker(storage, ctx, unit), {"shards": shards})
        return Counters(samples=len(sizes))


class WritePass(Stage):
    """Each block's shards, under their global names, and the block's record."""

    name = "mix-write"

    def __init__(self, first_shards: list[int], counts: list[int]):
        self.first_shards, self.counts = first_shards, counts

    def units(self, ctx):
        for block, (first, count) in enumerate(zip(self.first_shards, self.counts, strict=True)):
            yield Unit(f"{block:06d}", (block, first, count))

    def done(self, unit, ctx):
        out = ctx.out_storage()
        return out.exists(out.path(STATE, "blocks", f"{unit.name}.json"))

    def run_unit(self, unit, ctx):
        block, first, count = unit.spec
        rows = ctx.rows(block)
        settings = ctx.settings
        out = ctx.out_storage()
        images = _ImageFiles(ctx.mix.storage())
        try:
            with ShardWriter(out, settings.prefix, settings.max_samples, settings.max_bytes,
                             start_shard=first) as writer:
                for key, data, refs in zip(rows["key"].to_pylist(), rows["json"].to_pylist(),
                                           rows["images"].to_pylist(), strict=True):
                    members = []
                    for index, image in enumerate(refs):
                        blob = images.read(image["uri"], image["offset"], image["size"])
                        if settings.check_image_sha256 and hashlib.sha256(blob).hexdigest() != image["sha256"]:
                            raise ShardWriteError(
                                f"image {index} of {key} ({image['uri']} @ {image['offset']}) no longer matches "
                                "its task table's sha256: rebuild the task tables of that source")
                        members.append((image_member(index, image["format"]), blob))
                    writer.write(key, [*members, ("json", data)])
        finally:
            images.close()
        if len(writer.shards) != count:
            raise ShardWriteError(f"block {block}: wrote {len(writer.shards)} shards, its cut said {count}")
        write_marker(out, out.path(STATE, "blocks", f"{unit.name}.json"),
                     {"shards": [[i.name, i.samples, i.bytes, i.sha256] for i in writer.shards]})
        return Counters(samples=len(rows))


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
    filesystem. The passes run as Ray tasks when Ray is up (:func:`pipelines.runtime.ensure_ray`),
    else in this process. Returns the manifest.
    """
    storage = root if isinstance(root, Storage) else Storage(root)
    shards = shards or ShardSettings()
    out = open_directory(out_dir, out_options if out_options is not None else options_for(out_dir, storage))
    out.makedirs(out.root)
    block = shards.max_samples * shards.shards_per_task
    inputs = plan_inputs(storage, mix, block, salt=_fingerprint(shards))
    settings_hash = hashlib.sha256(f"{mix.fingerprint()}:{_fingerprint(shards)}".encode()).hexdigest()
    plan = plan_mixture(storage, mix, block, inputs)
    # The directory's identity: the plan (settings and the inputs' content) and the cut into shards.
    plan_hash = hashlib.sha256(f"{plan.plan_hash}:{_fingerprint(shards)}".encode()).hexdigest()
    finished = _claim(out, shards.prefix, plan_hash)
    if finished is not None:
        if not shards.keep_work:
            storage.remove(storage.path(plan.ctx.work))
        return finished
    ctx = WriteContext(plan.ctx, out.root_uri(), out.options, shards, tuple(plan.routed))
    execute(CutPass(plan.blocks), ctx)
    counts = [r["shards"] for r in read_markers(storage, [plan.ctx.path(storage, "cuts", f"{b:06d}.json")
                                                          for b in range(plan.blocks)])]
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist() if counts else []
    execute(WritePass(firsts, counts), ctx)
    records = read_markers(out, [out.path(STATE, "blocks", f"{b:06d}.json") for b in range(plan.blocks)])
    infos = [ShardInfo(*entry) for record in records for entry in record["shards"]]
    manifest = _manifest(storage, plan, plan_hash, mix, infos, config_hash or settings_hash, settings_hash,
                         stage_drops)
    if shards.report:
        from shards.report import write_report

        write_report(out, manifest)
    write_manifest(out, manifest)
    out.remove(out.path(STATE))
    if not shards.keep_work:
        storage.remove(storage.path(plan.ctx.work))
    return manifest


def _manifest(storage, plan: MixPlan, plan_hash, mix, infos, config_hash, settings_hash, stage_drops) -> dict:
    return {
        "format": FORMAT,
        "config_hash": config_hash,
        "settings_hash": settings_hash,
        "plan_hash": plan_hash,
        "inputs_fingerprint": plan.inputs_fingerprint,
        "seed": mix.seed,
        "total_samples": len(plan),
        "tasks": plan.tasks,
        "sources": plan.sources,
        "languages": plan.languages,
        "shards": [{"name": i.name, "samples": i.samples, "bytes": i.bytes, "sha256": i.sha256} for i in infos],
        "drops": {**plan.drops, **(stage_drops or {})},  # the other stages' drops, each reported once by its stage
    }


def _fingerprint(settings: ShardSettings) -> str:
    return json.dumps(
        settings.model_dump(mode="json", include={"prefix", "max_samples", "max_bytes", "shards_per_task"}),
        sort_keys=True,
    )


def _claim(out: Storage, prefix: str, plan_hash: str) -> dict | None:
    """Make ``out`` this plan's directory, or refuse one of another mixture. Returns the manifest if
    this plan's shards are already complete there."""
    foreign = ShardWriteError(
        f"{out.root_uri()} holds shards of another mixture: they were written with other inputs or settings. "
        "Write to an empty directory, or remove the old shards.")
    if out.exists(out.path(MANIFEST)):
        manifest = read_manifest(out)
        if manifest.get("plan_hash") != plan_hash:
            raise foreign
        return manifest
    marker = out.path(STATE, "plan.json")
    if out.exists(marker):
        if out.read_json(marker).get("plan_hash") != plan_hash:
            raise foreign
    elif out.glob(out.path(f"{prefix}-*.tar")):
        raise foreign
    else:
        out.write_json(marker, {"plan_hash": plan_hash})
    for stale in out.glob(out.path(f".{prefix}-*.tar.tmp")):  # a killed writer's unfinished shard
        out.fs.rm_file(stale)
    return None


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

