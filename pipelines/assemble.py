"""From the mixture config to the task-sample and shard stages' own settings, and running them.

The stages (``pipelines.tasks``, ``pipelines.mix``, ``shards``) take small settings objects of
their own; this module derives them from a :class:`~pipelines.config.Config`, so a user writes one
config and the flow calls one function per stage.
"""

from __future__ import annotations

import logging
import posixpath
from pathlib import Path
from typing import Any

from pipelines.config import Config, Source, SourceKind
from pipelines.storage import Storage

log = logging.getLogger(__name__)

OCR_TASKS = ("ocr_large", "ocr_small")


def ocr_stage(config: Config) -> dict[str, Any]:
    """OCR corpora and their task tables for sources with ``ocr``; transcription samples for OCR-task
    URL lists whose caption is the exact text (SynthDoG-style). Returns per-source counters."""
    from ocr import run_ocr_stage
    from ocr.tasks import write_ocr_task_tables

    storage = Storage(config.storage.root, config.storage.options)
    summary: dict[str, Any] = {}
    for source in config.sources:
        if source.task not in OCR_TASKS or source.kind is not SourceKind.URL_LIST:
            continue
        raw_source = source.images_from or source.name
        if source.ocr is not None:
            stats = run_ocr_stage(config.storage.root, raw_source, source.ocr.language, config.ocr,
                                  ray_address=config.ray.address, storage_options=config.storage.options)
            task_settings = config.ocr_tasks.model_copy(update={"task": source.task, "seed": config.seed})
            write_ocr_task_tables(config.storage.root, raw_source, source.name, task_settings,
                                  storage_options=config.storage.options)
            summary[source.name] = {"kept": stats.get("kept"), "dropped": stats.get("dropped", {})}
        else:
            summary[source.name] = _transcriptions_from_captions(config, storage, source, raw_source)
    return summary


def _transcriptions_from_captions(config: Config, storage: Storage, source: Source, raw_source: str) -> dict:
    """OCR samples whose answer is the caption itself: the exact text of a rendered image."""
    import random

    from ocr.prompts import pool
    from pipelines.tasks import ConversationRecord, write_conversation_table
    from pipelines.tasks.raw import complete_shards, iter_raw_shard

    kept, dropped = 0, 0
    for shard in complete_shards(storage, raw_source):
        target = storage.path("tasks", source.name, f"{shard}.parquet")
        if storage.exists(target):
            continue
        records = {}
        for sample in iter_raw_shard(storage, raw_source, shard):
            text = sample.caption.strip()
            if not text:
                dropped += 1
                continue
            language = source.language if source.language != "auto" else language_of(text)
            rng = random.Random(f"{config.seed}:{source.name}:{sample.key}")
            prompt = rng.choice(pool("transcribe", language))
            records[sample.key] = ConversationRecord(sample.key, language, [
                {"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": text}])
        kept += len(records)
        write_conversation_table(storage, source.name, source.task, raw_source, shard, records)
    return {"kept": kept, "dropped": {"empty_caption": dropped} if dropped else {}}


def language_of(text: str) -> str:
    """'zh', 'ja' or 'ko' when the text has characters of those scripts, else 'en'."""
    if any("\u3040" <= ch <= "\u30ff" for ch in text):
        return "ja"
    if any("\uac00" <= ch <= "\ud7af" for ch in text):
        return "ko"
    if any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text):
        return "zh"
    return "en"


def task_sources(config: Config) -> list[Source]:
    """Sources whose samples the task builder makes (OCR corpora are made by the OCR stage)."""
    return [s for s in config.sources if s.task not in OCR_TASKS and s.kind is not SourceKind.WEBDATASET]


def to_task_source(source: Source):
    from pipelines.tasks import TaskSource

    return TaskSource(
        name=source.name, kind=source.kind.value, task=source.task, language=source.language,
        locations=source.locations if source.kind is not SourceKind.URL_LIST else [],
        image_root=source.image_root, images_from=source.images_from,
        translate_to=source.translate_to, keep_original=source.keep_original,
    )


def build_tasks_stage(config: Config) -> dict[str, Any]:
    """Task-sample tables for every captioning/detection source; returns samples and drops per source."""
    from pipelines.tasks import TaskSettings, build_task_samples

    storage = Storage(config.storage.root, config.storage.options)
    settings = TaskSettings(seed=config.seed)
    summary = {}
    for source in task_sources(config):
        result = build_task_samples(to_task_source(source), storage, settings)
        summary[source.name] = {"datasets": result.datasets, "samples": result.samples, "drops": dict(result.drops)}
        log.info("tasks %s: %d samples (%s)", source.name, result.samples, ", ".join(result.datasets))
    return summary


def shard_directory(config: Config) -> Path:
    if config.shards.directory:
        return Path(config.shards.directory)
    storage = Storage(config.storage.root, config.storage.options)
    if storage.protocol not in ("file", "local"):
        raise ValueError("shards.directory must be set to a local folder when storage.root is object storage")
    return Path(storage.path("shards"))


def mix_settings(config: Config):
    from pipelines.mix import MixSettings

    weights = {source.name: source.weight for source in config.sources if source.weight != 1.0}
    return MixSettings(
        shares={task: spec.share for task, spec in config.tasks.items() if spec.share > 0},
        weights=weights, weight_by_size=config.mixture.weight_by_size,
        total_samples=config.mixture.total_samples, seed=config.seed, dedup=config.mixture.dedup,
    )


def _stage_drops(storage: Storage) -> dict[str, dict]:
    """Counters of the stages before the mixer, for the manifest."""
    drops: dict[str, dict] = {}
    for path in storage.glob(storage.path("raw", "*", "_vlmix_download.json")):
        stats = storage.read_json(path)
        drops.setdefault("download", {})[stats["source"]] = {
            "filtered": stats["filtered"], "failed": stats["failed"],
        }
    marker = storage.path("_stages", "ocr.json")
    if storage.exists(marker):
        drops["ocr"] = storage.read_json(marker).get("summary", {})
    marker = storage.path("_stages", "translate.json")
    if storage.exists(marker):
        drops["translate"] = storage.read_json(marker).get("summary", {})
    return drops


def mix_stage(config: Config) -> dict[str, Any]:
    """Draw the mixture, write the shards and manifest, verify them; return the manifest's summary."""
    from shards import ShardSettings, mix_and_write, verify

    storage = Storage(config.storage.root, config.storage.options)
    out = shard_directory(config)
    shard_settings = ShardSettings(prefix=config.shards.prefix, max_samples=config.shards.max_samples,
                                   max_bytes=config.shards.max_bytes)
    manifest = mix_and_write(storage, out, mix_settings(config), shard_settings,
                             config_hash=config.fingerprint(), stage_drops=_stage_drops(storage))
    checked = verify(out)
    if checked.problems:
        raise RuntimeError(f"the shards in {out} fail verification:\n" + "\n".join(checked.problems))
    return {
        "directory": str(out),
        "manifest": posixpath.join(str(out), "manifest.json"),
        "samples": sum(shard["samples"] for shard in manifest["shards"]),
        "shards": len(manifest["shards"]),
        "tasks": manifest["tasks"],
        "languages": manifest.get("languages", {}),
    }
