"""The OCR stage: raw img2dataset shards in, one OCR corpus Parquet file per shard out, on an actor pool.

    units: complete raw shards without a corpus file ──> OCR actor (engine built once per actor):
        read the shard, decode, OCR in batches, reading order, filters, write the shard's corpus file

It is a stage of the one contract (:class:`pipelines.stage.ActorStage`, run by
:func:`pipelines.stage.execute`): each actor of a pool of ``concurrency`` (``cpus_per_actor`` and
``gpus_per_actor`` each) builds its engine once and does one raw shard at a time, from reading its
tar to writing its corpus file (temporary name, then rename: :func:`ocr.corpus.write_shard`). Only
the shard's counters come back to the driver, so a long run keeps its finished shards when it is
killed and a rerun redoes exactly the unfinished ones. The stage stats name the Ray node each image
was OCRed on (``nodes``: node id -> images, this run), so placement on a cluster can be checked.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

from pipelines.stage import ActorStage, Counters, Pool, StageContext, Unit, execute
from pipelines.storage import Storage

from . import corpus
from .settings import OcrSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OcrContext(StageContext):
    """Where the storage root is (:class:`StageContext`); shipped to every actor. ``perceptual_hash`` (a run
    that decontaminates): each actor hashes the pictures it decodes for OCR into the corpus."""

    perceptual_hash: bool = False


class OcrStage(ActorStage):
    """``<root>/ocr/<source>/<shard>.parquet`` for each complete raw shard of ``source``."""

    name = "ocr"
    unit_kind = "shards"

    def __init__(self, source: str, language: str, settings: OcrSettings,
                 scripts: dict[str, list[str]] | None = None) -> None:
        self.source = source
        self.language = language
        self.settings = settings
        self.scripts = scripts  # a source of `language: auto`: each image in the language of its text
        self.label = source

    def units(self, ctx: OcrContext):
        from pipelines.layout.raw import complete_shards

        for shard in complete_shards(ctx.storage(), self.source):
            yield Unit(shard, group=self.source)

    def done(self, unit: Unit, ctx: OcrContext) -> bool:
        storage = ctx.storage()
        return storage.exists(corpus.shard_path(storage, self.source, unit.name))

    def pool(self, ctx: OcrContext) -> Pool:
        s = self.settings
        return Pool(size=s.concurrency, num_cpus=s.cpus_per_actor, num_gpus=s.gpus_per_actor)

    def setup(self, ctx: OcrContext):
        from .engines import build_engine

        settings = self.settings
        if not settings.threads_per_actor and settings.device == "cpu":
            # One runtime thread per reserved CPU, so a pool of actors does not oversubscribe the node.
            settings = settings.model_copy(update={"threads_per_actor": max(1, round(settings.cpus_per_actor))})
        return build_engine(settings)

    def run_unit(self, unit: Unit, ctx: OcrContext, engine) -> Counters:
        from pipelines.runtime import node_id

        from .shard import ocr_shard

        storage = ctx.storage()
        table = ocr_shard(storage, self.source, unit.name, self.language, self.settings, engine, self.scripts,
                          hash_images=ctx.perceptual_hash)
        corpus.write_shard(storage, self.source, unit.name, table)
        drops = Counter(r for r in table.column("drop_reason").to_pylist() if r is not None)
        log.info("OCR %s: shard %s done (%d images)", self.source, unit.name, table.num_rows)
        return Counters(table.num_rows, drops, tallies={"nodes": Counter({node_id(): table.num_rows})})


def pending_shards(storage: Storage, source: str) -> tuple[list[str], list[str]]:
    """(complete raw shards, those of them without a finished corpus file)."""
    from pipelines.layout.raw import complete_shards

    shards = complete_shards(storage, source)
    done = corpus.finished_shards(storage, source)
    return shards, [s for s in shards if s not in done]


def run_ocr_stage(
    root: str,
    source: str,
    language: str,
    settings: OcrSettings | None = None,
    storage_options: dict | None = None,
    scripts: dict[str, list[str]] | None = None,
    perceptual_hash: bool = False,
) -> dict:
    """OCR every complete, unfinished raw shard of ``source``; returns the stage stats.

    ``root`` is a local path or an fsspec URI (``s3://bucket/mix``); ``language`` is the
    language of the text in the images (``zh`` for Wukong, ``en`` for LAION-COCO). ``scripts``
    (language code -> its Unicode scripts), for a source of ``language: auto`` such as PDF pages:
    each image is labelled with the language whose scripts write most of the text read, and
    ``language`` only when the text has no letter of any of them (:func:`ocr.shard.text_language`). The units run
    on the Ray the caller started or joined (``pipelines.runtime.ensure_ray``), in this process if none.
    ``perceptual_hash`` (a run that decontaminates): each image's hashes, from the picture decoded for OCR,
    in the corpus (``image_phash``, ``image_dhash``); shards finished earlier are not redone for them.

    >>> stats = run_ocr_stage("/data/mix", "wukong", "zh", OcrSettings(concurrency=4))  # doctest: +SKIP
    >>> stats["dropped"]  # doctest: +SKIP
    {'no_text': 1203, 'undecodable_image': 2, ...}
    """
    settings = settings or OcrSettings()
    storage = Storage(root, storage_options)
    shards, pending = pending_shards(storage, source)
    log.info("OCR %s: %d complete raw shards, %d to do", source, len(shards), len(pending))
    started = time.time()
    ctx = OcrContext(root, dict(storage_options or {}), perceptual_hash=perceptual_hash)
    report = execute(OcrStage(source, language, settings, scripts), ctx)
    nodes = report.counters.tallies.get("nodes", Counter())
    return corpus.write_stage_stats(
        storage,
        source,
        {
            "source": source,
            "language": language,
            "language_by_script": sorted(scripts) if scripts else None,
            "raw_shards": report.units,
            "shards_this_run": report.units - report.skipped,
            "seconds_this_run": round(time.time() - started, 3),
            "nodes": dict(sorted(nodes.items())),  # Ray node id -> images OCRed there (this run)
            "settings": settings.model_dump(),
        },
    )
