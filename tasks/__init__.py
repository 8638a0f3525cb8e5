"""Task samples: captioning, detection, conversations and (via the OCR stage) OCR, as InternVL conversations.

Each source becomes task sample tables under ``<root>/tasks/<dataset>/`` (the contract is in
:mod:`pipelines.layout.task_table`), built unit by unit through the source's kind
(:mod:`tasks.kinds`); the mixer (:mod:`shards.mix`) reads them all.
"""

from tasks.build import (
    BuildResult,
    TaskSampleOptions,
    TaskSettings,
    build_task_samples,
    build_unit,
    translated_dataset,
    unit_texts,
)
from tasks.kinds import Kind, Unit, kind_names, kind_of

__all__ = [
    "BuildResult",
    "Kind",
    "TaskSampleOptions",
    "TaskSettings",
    "Unit",
    "build_task_samples",
    "build_unit",
    "kind_names",
    "kind_of",
    "translated_dataset",
    "unit_texts",
]
