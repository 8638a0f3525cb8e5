"""The task stage's one entry: :func:`run` over a :class:`TasksRun`, as the flow's registry calls
it: task-sample tables (original and translated datasets) for every source it builds, one unit per
raw shard or annotation chunk (:class:`tasks.stage.TaskTables`); per source, its datasets, samples
written and drops.

>>> run(TasksRun("/data/mix", settings=TaskSettings(seed=0), sources=(coco, laion)))  # doctest: +SKIP
{'coco': {'datasets': ['coco', 'coco-zh'], 'samples': 118287, 'drops': {...}}, ...}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipelines.source import Source
from tasks.stage import TaskStageContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TasksRun(TaskStageContext):
    """What the stage runs on: the root, its settings (:class:`TaskStageContext`) and the sources."""

    sources: tuple[Source, ...] = ()


def run(ctx: TasksRun) -> dict[str, Any]:
    """Build every source's task tables (resumable per unit); per source, datasets, samples and drops."""
    from pipelines.stage import execute
    from tasks.build import output_datasets
    from tasks.stage import TaskTables

    report = execute(TaskTables(list(ctx.sources)), ctx)
    summary = {}
    for source in ctx.sources:
        counters = report.groups.get(source.name)
        summary[source.name] = {"datasets": output_datasets(source), "samples": counters.samples if counters else 0,
                                "drops": dict(sorted(counters.drops.items())) if counters else {}}
        log.info("tasks %s: %d samples written (%s)", source.name, summary[source.name]["samples"],
                 ", ".join(summary[source.name]["datasets"]))
    return summary
