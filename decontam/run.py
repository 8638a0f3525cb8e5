"""Running the decontamination stage: every pass, in order, through the one executor.

>>> summary = run_decontam("/data/mix", DecontamSettings(evaluation_sets=[...]), order=["coyo", "laion"])  # doctest: +SKIP
>>> summary["removed"]  # per task-table dataset, per reason  # doctest: +SKIP
{'coyo': {'near_duplicate': 12}, 'laion': {'contamination': 3, 'near_duplicate': 40}}

The work folder ``<root>/_decontam/<hash>/`` is named by the settings, the task tables' names,
sizes and versions, and the evaluation sets' files' sizes and versions: a rerun with the same inputs
resumes unit by unit, changed inputs start afresh. The driver holds a few numbers per unit, never a
hash or a row. An image that does not decode is counted (``unreadable``) and its sample left as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pyarrow.parquet as pq

from decontam.context import DecontamContext, read_markers
from decontam.evalsets import versions
from decontam.index import EvalIndex, HashTables
from decontam.match import MatchBuckets
from decontam.removals import Audit, GatherText, WriteRemovals
from decontam.settings import DecontamSettings
from pipelines.layout.removals import AUDIT, REMOVALS_DIR
from pipelines.layout.task_table import TASKS_DIR, list_task_tables
from pipelines.stage import execute
from pipelines.storage import Storage

TABLES_PER_BUCKET = 8  # match buckets: one per this many task tables,
ROWS_PER_BUCKET = 4_000_000  # and at most about this many band rows in one (~10 s, a few hundred MB)


def source_order(dataset: str, order: list[str]) -> int:
    """Where a task-table dataset's source stands in ``order`` (``coco-zh``, a translated variant, is
    ``coco``'s); unlisted datasets after every listed one."""
    matches = [i for i, name in enumerate(order) if dataset == name or dataset.startswith(name + "-")]
    return max(matches, key=lambda i: len(order[i])) if matches else len(order)


def run_decontam(root: str | Path | Storage, settings: DecontamSettings, order: list[str] | None = None,
                 datasets: list[str] | None = None) -> dict:
    """Find near-duplicates across the task tables and contamination by the evaluation sets; write
    each table's removals and the audit file. ``order``: the sources as the config lists them (the
    tie-break of the keep rule); ``datasets``: the task-table datasets to cover (None: all)."""
    storage = root if isinstance(root, Storage) else Storage(str(root))
    found = list_task_tables(storage, datasets)
    order = list(order or [])
    tables = [(dataset, path, source_order(dataset, order)) for dataset, paths in found.items() for path in paths]
    if not tables:
        raise FileNotFoundError(f"no task tables under {storage.path(TASKS_DIR)}; build task samples first")
    names = tuple(spec.name for spec in settings.evaluation_sets)
    images = _rows(storage, tables)
    rows = images * len(settings.masks(images))  # band rows: each image once per band
    buckets = max(1, math.ceil(len(tables) / TABLES_PER_BUCKET), math.ceil(rows / ROWS_PER_BUCKET))
    ctx = DecontamContext(storage.root_uri(), storage.options, f"_decontam/{_work_hash(storage, settings, tables)[:16]}",
                          settings, buckets, len(tables), names, images)
    evaluation = execute(EvalIndex(), ctx)
    hashed = execute(HashTables(tables), ctx)
    matched = execute(MatchBuckets(), ctx)
    if names:
        execute(GatherText(tables), ctx)
    removals = execute(WriteRemovals(tables), ctx)
    execute(Audit(tables), ctx)
    removed = {group: dict(sorted(c.drops.items())) for group, c in removals.groups.items()}
    eval_counts = read_markers(storage, [ctx.path(storage, "eval", f"{name}.json") for name in names])
    return {"removed": removed, "by_reason": dict(sorted(removals.counters.drops.items())),
            "evaluation_sets": {name: record for name, record in zip(names, eval_counts, strict=True)},
            "unreadable": {"evaluation": dict(evaluation.counters.drops), "training": dict(hashed.counters.drops)},
            "audit": storage.path(REMOVALS_DIR, AUDIT),
            "index": {"bands": len(settings.masks(ctx.images)), "images": ctx.images,
                      **{k: int(v) for k, v in matched.counters.tallies.get("index", {}).items()}}}


def _rows(storage: Storage, tables) -> int:
    """The task tables' rows, from their footers: about how many images the index must hold."""
    return sum(pq.read_metadata(path, filesystem=storage.fs).num_rows for _, path, _ in tables)


def _work_hash(storage: Storage, settings: DecontamSettings, tables) -> str:
    infos = storage.fs.glob(storage.path(TASKS_DIR, "*", "*.parquet"), detail=True)
    inputs = [(path.split("/")[-2], path.split("/")[-1], order, int(infos[path]["size"]),
               str(infos[path].get("ETag") or infos[path].get("mtime") or infos[path].get("LastModified") or ""))
              for _, path, order in tables]
    evaluation = [versions(spec) for spec in settings.evaluation_sets]
    canonical = json.dumps([settings.model_dump(mode="json"), inputs, evaluation], separators=(",", ":"),
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
