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
