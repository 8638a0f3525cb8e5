"""Task samples: captioning, detection, conversations and (via the OCR stage) OCR, as InternVL conversations.

Each source becomes task sample tables under ``<root>/tasks/<dataset>/`` (the contract is in
:mod:`pipelines.tasks.table`), built unit by unit through the source's kind
(:mod:`pipelines.tasks.kinds`); the mixer (:mod:`shards.mix`) reads them all.
"""

from pipelines.tasks.build import (
    BuildResult,
    TaskSettings,
    build_task_samples,
    build_unit,
    iter_units,
    translated_dataset,
    unit_texts,
)
from pipelines.tasks.conversations import ConversationRecord, write_conversation_table
from pipelines.tasks.kinds import Kind, Unit, kind_names, kind_of
from pipelines.tasks.table import SCHEMA, ImageRef, Picture, TaskSample, list_task_tables, write_task_table

__all__ = [
    "SCHEMA",
    "BuildResult",
    "ConversationRecord",
    "ImageRef",
    "Kind",
    "Picture",
    "TaskSample",
    "TaskSettings",
    "Unit",
    "build_task_samples",
    "build_unit",
    "iter_units",
    "kind_names",
    "kind_of",
    "list_task_tables",
    "translated_dataset",
    "unit_texts",
    "write_conversation_table",
    "write_task_table",
]
