"""Export a shard directory for the official InternVL trainer: a meta JSON, JSONL, extracted images.

Layout written under ``out_dir`` (a folder, or an fsspec URI such as ``s3://bucket/export``)::

    images/<source>/<id>.<jpg|png|webp>  each distinct image once (repeats share the file; further
                                       images of a sample: <id>.1.jpg ...)
    annotations/<source>.jsonl         {"id", "image", "width", "height", "conversations", "length"}
    meta.json                          {<source>: {"root", "annotation", "data_augment",
                                         "max_dynamic_patch", "repeat_time", "length"}}

**Portable**: ``root`` and ``annotation`` are relative to the meta file (``images``,
``annotations/<source>.jsonl``), so the folder can be copied anywhere and trained from there (the
InternVL trainer opens them from its working directory: start it in the export's folder), or they
start with ``root_prefix``, the place the user will put the export (``/mnt/data/export``,
``s3://bucket/export``), written as given.

**Repeats**: a dataset the mixture repeats a whole number of times ``k`` (``repeat_time`` in the
manifest, every sample exactly ``k`` times) is written once per sample with ``repeat_time: k``,
which the loader applies; any other dataset is written as it is in the mixture, repeats included,
with ``repeat_time: 1`` (the loader takes only whole repeat counts above 1). Either way the
trainer sees the mixture's proportions; ``mixture_repeat_time`` keeps the manifest's value.

Each line's ``length`` is what the loader sorts by for ``group_by_length`` (:mod:`shards.lengths`);
``data_augment`` and ``max_dynamic_patch`` are per dataset (:class:`InternVLExportSettings`).

The work runs in units of the stage contract: one per shard (its images and its lines of each
source), then one per source (its lines joined in shard order); ``meta.json`` is written last, and
its presence marks a complete export. A killed export resumes from the units done.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from pipelines._model import ConfigModel
from pipelines.stage import Counters, Stage, StageContext, Unit, execute
from pipelines.storage import Storage
from shards.lengths import LengthSettings, LineLength
from shards.location import is_local, open_directory, options_for
from shards.manifest import read_manifest
from shards.reader import iter_samples

WORK = ".vlmix-export"


class DatasetExport(ConfigModel):
    """One dataset's entry in the meta file, where it differs from the export's defaults."""

    data_augment: bool | None = Field(None, description="InternVL's data_augment (training-time image jitter)")
    max_dynamic_patch: int | None = Field(None, ge=1, description="most tiles of this dataset's images")


class InternVLExportSettings(ConfigModel):
    """What ``vlmix export-internvl`` writes besides the samples."""

    root_prefix: str | None = Field(
        None, description="where the export will be read from (a folder or s3://...): meta paths start "
        "with it; none: paths relative to the meta file"
    )
    data_augment: bool = Field(False, description="data_augment of every dataset not listed in datasets")
    max_dynamic_patch: int = Field(12, ge=1, description="max_dynamic_patch of every dataset not listed")
    datasets: dict[str, DatasetExport] = Field(default_factory=dict, description="per-dataset overrides")
    length: LengthSettings = Field(default_factory=LengthSettings, description="how a line's length is counted")

    def entry(self, source: str) -> tuple[bool, int]:
        own = self.datasets.get(source, DatasetExport())
        return (self.data_augment if own.data_augment is None else own.data_augment,
                self.max_dynamic_patch if own.max_dynamic_patch is None else own.max_dynamic_patch)


@dataclass(frozen=True)
class ExportContext(StageContext):
    """``root``/``options``: the shard directory; ``out``/``out_options``: the export folder."""

    out: str = ""
    out_options: dict = field(default_factory=dict)
    settings: InternVLExportSettings = field(default_factory=InternVLExportSettings)
    once: frozenset = frozenset()  # sources written once per sample, their repeat_time applied by the loader
    work: str = WORK  # the units' records and parts: WORK/<fingerprint of the shards and settings>

    def output(self) -> Storage:
        return Storage(self.out, self.out_options)


class ExportShards(Stage):
    """One unit per shard: its images written once, its lines per source into a part file."""

    name = "export-internvl"
    unit_kind = "shards"

    def __init__(self, shards: list[str]):
        self.shards = shards

    def units(self, ctx: ExportContext):
        return [Unit(name) for name in self.shards]

    def done(self, unit: Unit, ctx: ExportContext) -> bool:
        out = ctx.output()
        return out.exists(out.path(ctx.work, f"{unit.name}.json"))

    def run_unit(self, unit: Unit, ctx: ExportContext) -> Counters:
        shards, out = ctx.storage(), ctx.output()
        length = LineLength(ctx.settings.length)
        local = is_local(out)
        lines: dict[str, list[str]] = {}
        written = Counter()
        for key, members in iter_samples(shards.path(unit.name), shards.fs):
            record = json.loads(members["json"])
            source, meta = record["source"], record["meta"]
            if meta["repeat"] and source in ctx.once:
                continue
            base_id = record["id"].rsplit("-r", 1)[0] if meta["repeat"] else record["id"]
            paths = []
            for image in meta["images"]:
                if image["member"] not in members:
                    raise ValueError(f"{shards.uri(shards.path(unit.name))}: sample {key} names image member "
                                     f"{image['member']!r}, which is not in the shard (run vlmix verify)")
                data = members[image["member"]]
                relative = posixpath.join(source, f"{base_id}.{image['member']}")
                target = out.path("images", relative)
                if not out.exists(target):  # an object store's PUT is whole or absent: no temporary name
                    out.write_bytes(target, data) if local else out.fs.pipe_file(target, data)
                paths.append(relative)
            _, max_patch = ctx.settings.entry(source)
            sizes = [(image["width"], image["height"]) for image in meta["images"]]
            # InternVL's format: one image as a path, several as a list, none: no image key.
            line = {"id": key, **({"image": paths[0] if len(paths) == 1 else paths} if paths else {}),
                    "width": record["width"], "height": record["height"],
                    "conversations": record["conversations"],
                    "length": length(record["conversations"], sizes, max_patch)}
            lines.setdefault(source, []).append(json.dumps(line, ensure_ascii=False) + "\n")
            written[source] += 1
        for source, text in lines.items():
            out.write_bytes(out.path(ctx.work, "parts", source, f"{unit.name}.jsonl"), "".join(text).encode("utf-8"))
        out.write_json(out.path(ctx.work, f"{unit.name}.json"), dict(written))
        return Counters(samples=sum(written.values()), tallies={"lines": written})


class JoinAnnotations(Stage):
    """One unit per source: its part files, in shard order, become ``annotations/<source>.jsonl``."""

    name = "export-internvl-join"
    unit_kind = "datasets"

    def __init__(self, parts: dict[str, list[str]]):
        self.parts = parts

    def units(self, ctx: ExportContext):
        return [Unit(source, tuple(shards), group=source) for source, shards in sorted(self.parts.items())]

    def done(self, unit: Unit, ctx: ExportContext) -> bool:
        return False  # cheap, and a rerun must not keep a file joined from another run's parts

    def run_unit(self, unit: Unit, ctx: ExportContext) -> Counters:
        out = ctx.output()
        target = out.path("annotations", f"{unit.name}.jsonl")
        temporary = out.path("annotations", f".{unit.name}.jsonl.tmp")
        out.makedirs(out.path("annotations"))
        lines = 0
        with out.fs.open(temporary, "wb") as joined:
            for shard in unit.spec:
                with out.fs.open(out.path(ctx.work, "parts", unit.name, f"{shard}.jsonl"), "rb") as part:
                    data = part.read()
                lines += data.count(b"\n")
                joined.write(data)
        out.fs.mv(temporary, target)
        return Counters(samples=lines)


def export_internvl(
    shard_dir: str | Path | Storage,
    out_dir: str | Path,
    settings: InternVLExportSettings | None = None,
    storage_options: dict[str, Any] | None = None,
    out_options: dict[str, Any] | None = None,
) -> str:
    """Write the InternVL meta file, JSONL annotations and images; returns the meta file's path.

    ``storage_options`` open the shards, ``out_options`` the output (default: the shards' own where
    both are on the same store). They travel to the export's Ray workers with the work: on a cluster,
    credentials and endpoints given here need not be in the workers' environment."""
    settings = settings or InternVLExportSettings()
    shards = open_directory(shard_dir, storage_options)
    out_dir = str(Path(out_dir).resolve()) if "://" not in str(out_dir) else str(out_dir)
    out = Storage(out_dir, out_options if out_options is not None else options_for(out_dir, shards))
    manifest = read_manifest(shards)
    sources = manifest["sources"]
    unknown = sorted(set(settings.datasets) - set(sources))
    if unknown:
        raise ValueError(f"datasets: {unknown} are not in the mixture {shards.root_uri()} (it has {sorted(sources)})")
    once = {name: entry["samples"] // entry["available"] for name, entry in sources.items()
            if _whole_repeats(entry)}
    # A resumed export reuses only records of the same shards and settings.
    fingerprint = hashlib.sha256(json.dumps([[e["name"], e["sha256"]] for e in manifest["shards"]] +
                                            [settings.model_dump(mode="json")], sort_keys=True).encode())
    ctx = ExportContext(root=shards.root_uri(), options=shards.options, out=out.root_uri(),
                        out_options=out.options, settings=settings, once=frozenset(once),
                        work=posixpath.join(WORK, fingerprint.hexdigest()[:16]))
    names = [entry["name"] for entry in manifest["shards"]]
    execute(ExportShards(names), ctx)
    parts: dict[str, list[str]] = {}
    lines = Counter()
    for name in names:  # one small record per shard
        for source, count in out.read_json(out.path(ctx.work, f"{name}.json")).items():
            parts.setdefault(source, []).append(name)
            lines[source] += count
    execute(JoinAnnotations(parts), ctx)
    meta = {}
    for source in sorted(lines):
        data_augment, max_patch = settings.entry(source)
        meta[source] = {
            "root": _located(settings.root_prefix, "images"),
            "annotation": _located(settings.root_prefix, f"annotations/{source}.jsonl"),
            "data_augment": data_augment,
            "max_dynamic_patch": max_patch,
            "repeat_time": once.get(source, 1),
            "length": lines[source],
            "mixture_repeat_time": sources[source].get("repeat_time"),
        }
    path = out.path("meta.json")
    out.write_bytes(path, (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    out.remove(out.path(WORK))
    return out.uri(path)


def _whole_repeats(entry: dict) -> bool:
    """Every sample of the source is in the mixture the same whole number of times, above 1."""
    available, samples = entry.get("available", 0), entry["samples"]
    return (len(entry.get("tasks", {})) == 1 and available > 0 and entry.get("unique_samples") == available
            and samples > available and samples % available == 0)


def _located(prefix: str | None, relative: str) -> str:
    return relative if prefix is None else f"{prefix.rstrip('/')}/{relative}"
