"""Samples a task table loses before mixing: what the decontamination stage writes and the mixer reads.

One Parquet file per task table, at the task table's path under ``decontam/`` instead of
``tasks/`` (``<root>/decontam/<dataset>/<unit>.parquet``), listing the rows to remove and why:

==============  ==================================================================================
``id``          the task sample's id (its key in the shards)
``reason``      ``contamination`` (an evaluation set holds its image or text) or ``near_duplicate``
``kept``        near_duplicate: the id of the sample kept in its place; else ""
``eval_set``    contamination: the evaluation set's name; else ""
``eval_item``   contamination: the item of that set (its id, or its image's name); else ""
``distance``    Hamming distance between the images' perceptual hashes; -1 for a text match
``ngram``       text match: the shared n-gram, normalised; else ""
==============  ==================================================================================

The file's metadata holds ``vlmix.content`` of the task table it was computed from: a table
rewritten since then no longer matches, and :func:`removed_ids` refuses it (rerun the stage).
``<root>/decontam/contamination.parquet`` gathers every contamination row of every table, for audit.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.layout.task_table import CONTENT_KEY, TASKS_DIR
from pipelines.storage import Storage

REMOVALS_DIR = "decontam"
AUDIT = "contamination.parquet"
REASONS = ("contamination", "near_duplicate")
SCHEMA = pa.schema([("id", pa.string()), ("reason", pa.string()), ("kept", pa.string()),
                    ("eval_set", pa.string()), ("eval_item", pa.string()), ("distance", pa.int32()),
                    ("ngram", pa.string())])


def removals_path(storage: Storage, table_path: str) -> str:
    """Where the removals of the task table at ``table_path`` (``.../tasks/<dataset>/<unit>.parquet``) are."""
    dataset, unit = table_path.rstrip("/").split("/")[-2:]
    if table_path.rstrip("/").split("/")[-3] != TASKS_DIR:
        raise ValueError(f"{table_path} is not a task table (<root>/{TASKS_DIR}/<dataset>/<unit>.parquet)")
    return storage.path(REMOVALS_DIR, dataset, unit)


def write_removals(storage: Storage, table_path: str, rows: pa.Table, content: str) -> str:
    """Write a task table's removals (``rows`` in :data:`SCHEMA`), tied to its ``content`` fingerprint."""
    table = rows.cast(SCHEMA).sort_by("id").replace_schema_metadata({CONTENT_KEY: content.encode()})
    path = removals_path(storage, table_path)
    storage.write_parquet(path, table)
    return path


def read_removals(storage: Storage, table_path: str, content: str | None = None) -> pa.Table | None:
    """The removals of the task table at ``table_path`` whose content fingerprint is ``content`` (None: not
    checked); None when the stage did not run. A file computed from other content is an error naming both files."""
    path = removals_path(storage, table_path)
    if not storage.exists(path):
        return None
    table = pq.read_table(path, filesystem=storage.fs)
    written = (table.schema.metadata or {}).get(CONTENT_KEY, b"").decode()
    if content is not None and written != content:
        raise ValueError(f"{path} lists removals for another version of {table_path} (the task table was "
                         "rewritten since): rerun the decontamination stage, or delete the file")
    return table
