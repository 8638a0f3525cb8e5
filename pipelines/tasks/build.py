"""Building a source's task sample tables: one unit (raw shard or annotation chunk) at a time.

Each unit becomes ``<root>/tasks/<source>/<unit>.parquet`` and, for every ``translate_to``
language, ``<root>/tasks/<source>-<language>/<unit>.parquet``. A unit whose outputs all exist is
skipped, so a rerun after a kill redoes only what was not finished.

>>> from pipelines.tasks import TaskSource, TaskSettings, build_task_samples
>>> source = TaskSource(name="coco_caps", kind="url_list", task="captioning", language="en")
>>> build_task_samples(source, "/data/mix", TaskSettings(seed=0))  # doctest: +SKIP
BuildResult(datasets=['coco_caps'], units_written=3, units_skipped=0, samples=2913, drops={...})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from pipelines._model import ConfigModel
from pipelines.storage import Storage
from pipelines.tasks.captioning import caption_drafts
from pipelines.tasks.conversations import internvl_samples, read_jsonl
from pipelines.tasks.detection import detection_drafts
from pipelines.tasks.draft import Draft
from pipelines.tasks.local import coco_drafts, coco_units, grit_drafts, grit_units
from pipelines.tasks.prompts import PromptPools
from pipelines.tasks.raw import complete_shards
from pipelines.tasks.table import TaskSample, table_path, write_task_table
from pipelines.tasks.translated import TranslationColumns, load_translations, translated_texts

OCR_TASKS = ("ocr_large", "ocr_small")


class TaskSource(ConfigModel):
    """What the task builder needs to know of one source (a subset of the mixture config's source)."""

    name: str = Field(description="the source's name: folder under raw/, translate/ and tasks/")
    kind: Literal["url_list", "coco", "grit_jsonl", "internvl_jsonl"] = Field(
        description="url_list: img2dataset raw shards; the others: annotation files + image_root"
    )
    task: str = Field(description="captioning, detection, or any task of an internvl_jsonl source")
    language: str = Field(description="language code of the source's own annotations")
    locations: list[str] = Field(default_factory=list, description="annotation files (coco, *_jsonl kinds)")
    image_root: str | None = Field(None, description="image folder the annotation files refer to")
    images_from: str | None = Field(None, description="read raw shards of this source instead of `name`")
    translate_to: list[str] = Field(default_factory=list, description="languages of translated variants")
    keep_original: bool = Field(True, description="also write the untranslated samples")

    @model_validator(mode="after")
    def _consistent(self) -> TaskSource:
        if self.kind != "url_list" and (not self.locations or not self.image_root):
            raise ValueError(f"a {self.kind} source needs `locations` and `image_root`")
        if self.kind == "url_list" and self.task in OCR_TASKS:
            raise ValueError(
                f"{self.task} samples are built by the OCR stage (pipelines.tasks.write_conversation_table)"
            )
        if self.kind == "url_list" and self.task not in ("captioning", "detection"):
            raise ValueError(f"a url_list source builds captioning or detection samples, not {self.task!r}")
        if self.kind in ("coco", "grit_jsonl") and self.task != "detection":
            raise ValueError(f"a {self.kind} source builds detection samples; its task is {self.task!r}")
        if self.translate_to and self.kind == "internvl_jsonl":
            raise ValueError("translated variants are built for url_list, coco and grit_jsonl sources")
        if not self.keep_original and not self.translate_to:
            raise ValueError("keep_original is false and translate_to is empty: nothing to build")
        return self


class TaskSettings(ConfigModel):
    """Settings of the task stage."""

    seed: int = Field(0, description="fixes each sample's prompt choice")
    prompts: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="extra prompt pools: purpose (caption|detect|refer) -> language -> list",
    )
    max_objects: int = Field(64, ge=1, description="boxes (or referring expressions) kept per sample")
    images_per_unit: int = Field(
        10_000, ge=1, description="records per task table for annotation-file sources"
    )
    translation_columns: TranslationColumns = Field(default_factory=TranslationColumns)


@dataclass
class BuildResult:
    datasets: list[str]
    units_written: int = 0
    units_skipped: int = 0
    samples: int = 0
    drops: dict[str, int] = field(default_factory=dict)


def translated_dataset(source: str, language: str) -> str:
    """The dataset name of a source's translated variants, e.g. ``coyo-zh``."""
    return f"{source}-{language}"


def build_task_samples(source: TaskSource, root: str | Storage, settings: TaskSettings) -> BuildResult:
    """Write the task sample tables of ``source`` under ``<root>/tasks/``; skip finished units."""
    storage = root if isinstance(root, Storage) else Storage(root)
    prompts = PromptPools(settings.prompts, seed=settings.seed)
    for purpose in _purposes(source):
        for language in [source.language, *source.translate_to]:
            prompts.require(purpose, language)
    outputs = ([source.name] if source.keep_original else []) + [
        translated_dataset(source.name, language) for language in source.translate_to
    ]
    result = BuildResult(datasets=outputs)
    translations = (
        load_translations(storage, source.name, settings.translation_columns) if source.translate_to else {}
    )
    drops_total: Counter[str] = Counter()
    for unit, make in _units(storage, source, settings):
        if all(storage.exists(table_path(storage, dataset, unit)) for dataset in outputs):
            result.units_skipped += 1
            continue
        drops: Counter[str] = Counter()
        per_dataset: dict[str, list[TaskSample]] = {dataset: [] for dataset in outputs}
        inputs = 0
        for item in make(drops):
            inputs += 1
            if isinstance(item, TaskSample):
                per_dataset[source.name].append(item)
                continue
            if source.keep_original:
                per_dataset[source.name].append(
                    item.sample(source.name, source.task, source.language, prompts)
                )
            for language in source.translate_to:
                texts = translated_texts(item, language, translations, drops)
                if texts is not None:
                    name = translated_dataset(source.name, language)
                    sample = item.translated(name, source.task, language, source.language, texts, prompts)
                    per_dataset[name].append(sample)
        inputs += sum(n for reason, n in drops.items() if not reason.startswith(("object:", "translation_")))
        # The original is written last: a unit counts as done only once every output exists.
        for dataset in reversed(outputs):
            write_task_table(storage, dataset, unit, per_dataset[dataset], drops, inputs)
            result.samples += len(per_dataset[dataset])
        result.units_written += 1
        drops_total.update(drops)
    result.drops = dict(sorted(drops_total.items()))
    return result


def _purposes(source: TaskSource) -> list[str]:
    if source.kind == "internvl_jsonl":
        return []
    if source.task == "captioning":
        return ["caption"]
    return (
        ["detect", "refer"]
        if source.kind == "url_list"
        else ["refer" if source.kind == "grit_jsonl" else "detect"]
    )


def iter_drafts(source: TaskSource, root: str | Storage, settings: TaskSettings) -> Iterator[tuple[str, list[Draft]]]:
    """(unit, drafts) for every input unit of ``source``: the English texts a translation stage needs,
    named by the fields (``caption``, ``objects.<i>.name``, ``ref_exps.<i>``) the builder reads back."""
    storage = root if isinstance(root, Storage) else Storage(root)
    for unit, make in _units(storage, source, settings):
        drafts = [item for item in make(Counter()) if isinstance(item, Draft)]
        if drafts:
            yield unit, drafts


def _units(storage: Storage, source: TaskSource, settings: TaskSettings) -> Iterator[tuple[str, callable]]:
    """(unit name, function(drops) -> drafts or samples) for every input unit of the source."""
    if source.kind == "url_list":
        raw_source = source.images_from or source.name
        shards = complete_shards(storage, raw_source)
        if not shards:
            raise FileNotFoundError(f"no complete raw shards under {storage.path('raw', raw_source)}")
        for shard in shards:
            if source.task == "captioning":
                yield shard, lambda drops, shard=shard: caption_drafts(storage, raw_source, shard, drops)
            else:
                yield (
                    shard,
                    lambda drops, shard=shard: detection_drafts(
                        storage, raw_source, shard, settings.max_objects, drops
                    ),
                )
        return
    for location in source.locations:
        if source.kind == "coco":
            units = coco_units(storage, location, settings.images_per_unit)
            build = coco_drafts
        elif source.kind == "grit_jsonl":
            units = grit_units(storage, location, settings.images_per_unit)
            build = grit_drafts
        else:
            records = read_jsonl(storage, location)
            stem = location.rsplit("/", 1)[-1].split(".")[0]
            size = settings.images_per_unit
            for start in range(0, len(records), size):
                chunk = records[start : start + size]
                yield (
                    f"{stem}-{start // size:05d}",
                    lambda drops, chunk=chunk: internvl_samples(
                        storage, source.name, source.task, source.language, source.image_root, chunk, drops
                    ),
                )
            continue
        for unit, records in units.items():
            yield (
                unit,
                lambda drops, records=records, build=build: build(
                    storage, source.image_root, records, settings.max_objects, drops
                ),
            )
