"""Building a source's task sample tables: one unit (raw shard, annotation chunk, tar) at a time.

Each unit becomes ``<root>/tasks/<source>/<unit>.parquet`` and, for every ``translate_to``
language, ``<root>/tasks/<source>-<language>/<unit>.parquet``. A unit whose outputs all exist is
skipped, so a rerun after a kill redoes only what was not finished. Units run as Ray tasks when Ray
is up (the flow starts it), in this process otherwise; each reads only its own inputs and its own
translation parts, so the driver holds a few numbers per unit, never a row per sample.

>>> from flows.config import load_config
>>> config = load_config("configs/demo.yaml")  # doctest: +SKIP
>>> build_task_samples(config.source("demo_coco"), "/data/mix", TaskSettings(seed=0))  # doctest: +SKIP
BuildResult(datasets=['demo_coco'], units_written=3, units_skipped=0, samples=2913, drops={...})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from pydantic import Field

from pipelines._model import ConfigModel
from pipelines.languages import language_of
from pipelines.layout.images import NoPictures, UnitImages
from pipelines.layout.task_table import TaskSample, write_task_table
from pipelines.stage import Unit
from pipelines.storage import Storage
from tasks.draft import Draft
from tasks.kinds import TaskContext, kind_of
from tasks.prompts import PromptPools
from tasks.translated import TranslationColumns, load_unit_translations, translated_texts


class TaskSampleOptions(ConfigModel):
    """What a mixture config sets of the task stage (``task_samples``)."""

    max_objects: int = Field(64, ge=1, description="boxes (or referring expressions) kept per sample")
    images_per_unit: int = Field(
        10_000, ge=1, description="records per task table (a unit, the resume point) for annotation-file sources"
    )


class TaskSettings(TaskSampleOptions):
    """Settings of the task stage: the config's options plus what the flow derives from the mixture
    (the seed, the languages' prompt pools and scripts)."""

    seed: int = Field(0, description="fixes each sample's prompt choice")
    prompts: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="extra prompt pools: purpose (caption|detect|refer) -> language -> list",
    )
    scripts: dict[str, list[str]] = Field(
        default_factory=dict, description="language code -> Unicode scripts, for sources with language: auto"
    )
    translation_columns: TranslationColumns = Field(default_factory=TranslationColumns)
    perceptual_hash: bool = Field(False, description="hash each image as it is read (pipelines.phash), for the "
                                  "decontamination stage: set by the flow when the config decontaminates")


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


def output_datasets(source) -> list[str]:
    return ([source.name] if source.keep_original else []) + [
        translated_dataset(source.name, language) for language in source.translate_to
    ]


def context(storage: Storage, settings: TaskSettings) -> TaskContext:
    detect = partial(language_of, languages=settings.scripts) if settings.scripts else None
    return TaskContext(storage, settings, detect)


def build_task_samples(source, root: str | Storage, settings: TaskSettings) -> BuildResult:
    """Write the task sample tables of ``source`` (a config source) under ``<root>/tasks/``; skip finished units."""
    from pipelines.stage import execute
    from tasks.stage import TaskStageContext, TaskTables

    storage = root if isinstance(root, Storage) else Storage(root)  # a URI alone: default options
    report = execute(TaskTables([source]), TaskStageContext(storage.root_uri(), storage.options, settings))
    return BuildResult(datasets=output_datasets(source), units_written=report.units - report.skipped,
                       units_skipped=report.skipped, samples=report.counters.samples,
                       drops=dict(sorted(report.counters.drops.items())))


def build_unit(source, unit: Unit, ctx) -> tuple[int, dict]:
    """Write one unit's task tables (original and translated) under ``ctx`` (a ``TaskStageContext``);
    returns (samples written, drops)."""
    storage, settings = ctx.storage(), ctx.settings
    kind = kind_of(source)
    kind_ctx = context(storage, settings)
    prompts = PromptPools(settings.prompts, seed=settings.seed)
    outputs = output_datasets(source)
    translations = (
        load_unit_translations(storage, source.name, unit.name, settings.translation_columns)
        if source.translate_to else {}
    )
    images = UnitImages(storage, source.name, unit.name, hash_images=settings.perceptual_hash)
    drops: Counter[str] = Counter()
    per_dataset: dict[str, list[TaskSample]] = {dataset: [] for dataset in outputs}
    inputs = 0
    for item in kind.items(source, unit, kind_ctx, images, drops):
        inputs += 1
        if isinstance(item, TaskSample):
            per_dataset[source.name].append(item)
            continue
        if source.keep_original:
            per_dataset[source.name].append(item.sample(source.name, source.task, source.language, prompts))
        for language in source.translate_to:
            texts = translated_texts(item, language, translations, drops)
            if texts is not None:
                name = translated_dataset(source.name, language)
                per_dataset[name].append(
                    item.translated(name, source.task, language, source.language, texts, prompts)
                )
    inputs += sum(n for reason, n in drops.items() if not reason.startswith(("object:", "translation_", "markup_")))
    images.commit()
    # The original is written last: a unit counts as done only once every output exists.
    samples = 0
    for dataset in reversed(outputs):
        write_task_table(storage, dataset, unit.name, per_dataset[dataset], drops, inputs)
        samples += len(per_dataset[dataset])
    return samples, dict(drops)


def unit_texts(source, unit: Unit, ctx) -> list[tuple]:
    """``(key, field, text)`` of every English text of one unit: what the translation stage translates,
    named by the fields (``caption``, ``objects.<i>.name``, ``ref_exps.<i>``, ``conversations``: a whole
    conversation as JSON turns) the builder reads back. No image is read: a record whose image later
    proves missing or undecodable has its texts translated all the same (and is counted out by the build)."""
    storage, settings = ctx.storage(), ctx.settings
    images = NoPictures()  # the texts are all this pass needs: no image is read
    rows = []
    for item in kind_of(source).items(source, unit, context(storage, settings), images, Counter()):
        if isinstance(item, Draft):
            rows.extend((item.key, name, text) for name, text in sorted(item.texts.items()))
    return rows
