"""Task samples: captioning, detection and (via the OCR stage) OCR, as InternVL conversations.

Each source becomes task sample tables under ``<root>/tasks/<dataset>/`` (the contract is in
:mod:`pipelines.tasks.table`); the mixer (:mod:`pipelines.mix`) reads them all.
"""

from pipelines.tasks.build import (
    BuildResult,
    TaskSettings,
    TaskSource,
    build_task_samples,
    translated_dataset,
)
from pipelines.tasks.conversations import ConversationRecord, write_conversation_table
from pipelines.tasks.table import SCHEMA, ImageRef, TaskSample, list_task_tables, write_task_table

__all__ = [
    "SCHEMA",
    "BuildResult",
    "ConversationRecord",
    "ImageRef",
    "TaskSample",
    "TaskSettings",
    "TaskSource",
    "build_task_samples",
    "list_task_tables",
    "translated_dataset",
    "write_conversation_table",
    "write_task_table",
]
