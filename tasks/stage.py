"""The task stage and the translation inputs, as stages of the one contract (:mod:`pipelines.stage`).

Every unit of every source the stage builds is one unit of work: the executor skips those whose
tables exist and runs the rest as Ray tasks, all sources at once, so a cluster is busy with the
whole mixture rather than one source after another.

>>> report = execute(TaskTables(config_sources), TaskStageContext(root, options, settings))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.layout.task_table import table_path
from pipelines.stage import Counters, Stage, StageContext, Unit
from pipelines.storage import Storage
from tasks.build import TaskSettings, build_unit, context, output_datasets, unit_texts
from tasks.kinds import kind_of
from tasks.prompts import PromptPools
from tasks.translated import require_translations

_TEXTS = pa.schema([("key", pa.string()), ("field", pa.string()), ("text", pa.string())])


@dataclass(frozen=True)
class TaskStageContext(StageContext):
    """What every unit needs: the storage root and its options (:class:`StageContext`) and the settings."""

    settings: TaskSettings = field(default_factory=TaskSettings)


class _PerSourceUnits(Stage):
    def __init__(self, sources):
        self.sources = {source.name: source for source in sources}

    def units(self, ctx: TaskStageContext):
        storage = ctx.storage()
        for source in self.sources.values():
            self.check(source, storage, ctx.settings)
            for unit in kind_of(source).units(source, context(storage, ctx.settings)):
                yield Unit(unit.name, unit.spec, group=source.name)

    def check(self, source, storage: Storage, settings: TaskSettings) -> None:
        """Fail before any unit runs on what is wrong for the whole source."""


class TaskTables(_PerSourceUnits):
    """``<root>/tasks/<dataset>/<unit>.parquet`` for each unit and output dataset of each source."""

    name = "tasks"

    def check(self, source, storage, settings):
        prompts = PromptPools(settings.prompts, seed=settings.seed)
        for purpose in kind_of(source).purposes(source):
            for language in [source.language, *source.translate_to]:
                if language != "auto":
                    prompts.require(purpose, language)
        if source.translate_to:
            require_translations(storage, source.name)

    def done(self, unit, ctx):
        storage = ctx.storage()
        return all(storage.exists(table_path(storage, dataset, unit.name))
                   for dataset in output_datasets(self.sources[unit.group]))

    def run_unit(self, unit, ctx):
        samples, drops = build_unit(self.sources[unit.group], unit, ctx)
        return Counters(samples, Counter(drops))


class TranslationInputs(_PerSourceUnits):
    """``<root>/translate/<source>/_input/<unit>.parquet``: each unit's English texts (key, field, text),
    named by the fields the task builder reads back; the translation stage's parts, one per unit."""

    name = "translate-inputs"

    def target(self, storage: Storage, unit: Unit) -> str:
        return storage.path("translate", unit.group, "_input", f"{unit.name}.parquet")

    def done(self, unit, ctx):
        storage = ctx.storage()
        return storage.exists(self.target(storage, unit))

    def run_unit(self, unit, ctx):
        rows = unit_texts(self.sources[unit.group], unit, ctx)
        table = pa.table({"key": [r[0] for r in rows], "field": [r[1] for r in rows],
                          "text": [r[2] for r in rows]}, schema=_TEXTS)
        storage = ctx.storage()
        storage.write_parquet(self.target(storage, unit), table)
        return Counters(samples=len(rows))
