"""The mixer: which task samples, and how many times each, make a mixture of the target shares.

Inputs (:class:`MixSettings`): target shares per task, a weight per dataset within its task, the
total number of samples, a seed. Steps:

1. **Index** the light columns (id, task, language, image sha256) of every complete task table.
2. **Exact duplicates out**: rows with the same image sha256 (by default also the same task and
   language, so a translated variant or a caption and an OCR sample of one image both stay) are
   kept once: the first in (dataset, file, row) order. Removals are counted per dataset.
3. **Counts**: ``total * share`` per task, split among the task's datasets by weight (largest
   remainder rounding, so counts add up exactly).
4. **Selection** per (task, dataset) from its own random stream, seeded by the mix seed and the
   pair's names: without replacement while the dataset suffices; past that, every row is taken
   ``k`` times plus a random remainder, and each repeat is recorded (``repeat_time``, as the
   InternVL trainer's meta file calls it, and a per-sample repeat number).
5. **Order**: one seeded permutation of all picks, so each shard interleaves every source.

Everything is deterministic given the task tables and the settings. Memory is a few tens of bytes
per candidate row (the light columns) plus 12 bytes per picked sample.

>>> plan = plan_mixture("/data/mix", MixSettings(total_samples=100_000, seed=1))  # doctest: +SKIP
>>> plan.tasks["detection"]  # doctest: +SKIP
{'target_share': 0.052, 'target_samples': 5200, 'samples': 5200, 'achieved_share': 0.052}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from pipelines._model import ConfigModel
from pipelines.layout.task_table import PLAN_COLUMNS, list_task_tables, read_counters
from pipelines.storage import Storage

REPORT_TASK_SHARES = {"captioning": 0.539, "detection": 0.052, "ocr_large": 0.320, "ocr_small": 0.089}


class MixError(ValueError):
    """The mixture cannot be built as asked (a task without data, a weight for no dataset, ...)."""


class MixSettings(ConfigModel):
    """What mixture to draw."""

    shares: dict[str, float] = Field(
        default_factory=lambda: dict(REPORT_TASK_SHARES),
        description="task -> target fraction of all samples; must add up to 1 (within 0.001)",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="dataset -> relative weight among the datasets of its task; unlisted datasets weigh 1",
    )
    weight_by_size: bool = Field(
        False, description="multiply each weight by the dataset's unique sample count (natural proportions)"
    )
    total_samples: int = Field(ge=1, description="samples in the mixture, repeats included")
    seed: int = Field(0, description="fixes the selection and the order")
    datasets: list[str] | None = Field(None, description="task-table datasets to draw from; None = all")
    dedup: Literal["image_task_language", "image", "off"] = Field(
        "image_task_language",
        description="what makes two rows exact duplicates: the same image bytes and ...",
    )

    @field_validator("shares")
    @classmethod
    def _shares(cls, shares: dict[str, float]) -> dict[str, float]:
        for task, share in shares.items():
            if not math.isfinite(share) or share <= 0:
                raise ValueError(f"share of {task!r} must be a finite number above 0, got {share}")
        total = sum(shares.values())
        if not shares or abs(total - 1.0) > 1e-3:
            raise ValueError(f"task shares must add up to 1, they add up to {total:.4f}")
        return shares

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        for dataset, weight in weights.items():
            if not math.isfinite(weight) or weight <= 0:
                raise ValueError(f"weight of {dataset!r} must be a finite number above 0, got {weight}")
        return weights

    @model_validator(mode="after")
    def _weights_in_datasets(self) -> MixSettings:
        if self.datasets is not None:
            unknown = sorted(set(self.weights) - set(self.datasets))
            if unknown:
                raise ValueError(f"weights given for datasets not in `datasets`: {unknown}")
        return self

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class MixPlan:
    """The mixture: ``files[file_index[i]]`` row ``row_index[i]`` is output sample ``i``."""

    files: list[str]
    file_index: np.ndarray  # int32, per output sample
    row_index: np.ndarray  # int32
    repeat: np.ndarray  # int32: 0 for a sample's first use, k for its k-th repeat
    ids: pa.Array  # the output samples' ids, repeats suffixed "-r<k>"
    tasks: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)
    languages: dict[str, dict] = field(default_factory=dict)
    drops: dict[str, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_index)


def largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer counts proportional to ``weights`` that add up to exactly ``total``."""
    norm = sum(weights.values())
    exact = {name: total * weight / norm for name, weight in weights.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def plan_mixture(root: str | Storage, settings: MixSettings) -> MixPlan:
    """Index, deduplicate, count and select: the whole mixture, before any byte is written."""
    storage = root if isinstance(root, Storage) else Storage(root)
    index, files, table_drops = _load_index(storage, settings.datasets)
    # Rows in (dataset, id) order: the draw must not depend on the order downloads finished in.
    index = index.sort_by([("dataset", "ascending"), ("id", "ascending")])
    index, dedup_drops = _deduplicate(index, settings.dedup)
    drops: dict[str, dict] = {"tasks": table_drops, "dedup": dedup_drops}

    outside = index.filter(pc.invert(pc.is_in(index["task"], pa.array(list(settings.shares)))))
    if len(outside):
        drops["mix"] = {
            f"task_not_in_mixture:{t}": n for t, n in Counter(outside["task"].to_pylist()).items()
        }
    task_counts = largest_remainder(settings.total_samples, settings.shares)
    picks, tasks, sources = [], {}, {}
    languages: Counter[str] = Counter()
    datasets_seen: set[str] = set()
    for task, share in settings.shares.items():
        rows = index.filter(pc.equal(index["task"], task))
        names = sorted(set(rows["dataset"].to_pylist()))
        if not names:
            raise MixError(
                f"task {task!r} has a target share of {share} but no samples in the task tables "
                f"(tasks present: {sorted(set(index['task'].to_pylist()))}); build its sources first"
            )
        datasets_seen.update(names)
        sizes = {name: _count(pc.equal(rows["dataset"], name)) for name in names}
        weights = {
            name: settings.weights.get(name, 1.0) * (sizes[name] if settings.weight_by_size else 1)
            for name in names
        }
        counts = largest_remainder(task_counts[task], weights)
        tasks[task] = {
            "target_share": share / sum(settings.shares.values()),
            "target_samples": task_counts[task],
        }
        for name in names:
            chosen = rows.filter(pc.equal(rows["dataset"], name))
            positions, repeats = _select(len(chosen), counts[name], settings.seed, task, name)
            picks.append((chosen.take(pa.array(positions)), repeats))
            entry = sources.setdefault(name, {"tasks": {}, "available": 0, "target_samples": 0})
            entry["tasks"][task] = counts[name]
            entry["available"] += len(chosen)
            entry["target_samples"] += counts[name]
            entry["weight"] = settings.weights.get(name, 1.0)
            entry["duplicates_removed"] = dedup_drops.get(name, 0)
            # A dataset's languages are drawn in proportion, so this is the expected language mix.
            for language, n in Counter(chosen["language"].to_pylist()).items():
                languages[language] += counts[name] * n / len(chosen)
    unknown = sorted(set(settings.weights) - datasets_seen)
    if unknown:
        raise MixError(f"weights name datasets with no samples for any task of the mixture: {unknown}")
    return _assemble(picks, files, settings, tasks, sources, languages, drops)


def _count(mask) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _select(available: int, count: int, seed: int, task: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (and repeat numbers) for ``count`` picks among ``available`` rows."""
    words = np.frombuffer(hashlib.sha256(f"{task}/{dataset}".encode()).digest()[:8], dtype=np.uint32)
    rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, *words.tolist()]))
    full, rest = divmod(count, available)
    positions = [np.arange(available, dtype=np.int64)] * full + [np.sort(rng.permutation(available)[:rest])]
    repeats = [np.full(available, k, dtype=np.int32) for k in range(full)] + [
        np.full(rest, full, dtype=np.int32)
    ]
    return np.concatenate(positions), np.concatenate(repeats)


def _assemble(picks, files, settings, tasks, sources, languages, drops) -> MixPlan:
    chosen = pa.concat_tables([table for table, _ in picks])
    repeat = np.concatenate([repeats for _, repeats in picks])
    rng = np.random.default_rng(
        np.random.SeedSequence([settings.seed & 0xFFFFFFFF, settings.seed >> 32, 0x6D6978])
    )
    order = rng.permutation(len(chosen))
    chosen = chosen.take(pa.array(order))
    repeat = repeat[order]
    suffix = pa.array(np.where(repeat > 0, np.char.add("-r", repeat.astype(str)), ""))
    ids = pc.binary_join_element_wise(chosen["id"], suffix, "")
    total = len(chosen)
    for task, entry in tasks.items():
        n = _count(pc.equal(chosen["task"], task))
        entry.update(samples=n, achieved_share=n / total)
    for name, entry in sources.items():
        mask = pc.equal(chosen["dataset"], name)
        n = _count(mask)
        unique = _count(pc.and_(mask, pa.array(repeat == 0)))
        entry.update(
            target_share=entry["target_samples"] / total,
            samples=n,
            achieved_share=n / total,
            unique_samples=unique,
            repeat_time=n / entry["available"],
        )
    language_stats = {}
    for language, expected in sorted(languages.items()):
        n = _count(pc.equal(chosen["language"], language))
        language_stats[language] = {
            "target_share": expected / total,
            "samples": n,
            "achieved_share": n / total,
        }
    return MixPlan(
        files=files,
        file_index=chosen["file"].to_numpy().astype(np.int32),
        row_index=chosen["row"].to_numpy().astype(np.int32),
        repeat=repeat,
        ids=ids,
        tasks=tasks,
        sources=dict(sorted(sources.items())),
        languages=language_stats,
        drops=drops,
    )


def _load_index(storage: Storage, datasets: list[str] | None) -> tuple[pa.Table, list[str], dict]:
    tables, files, table_drops = [], [], {}
    for dataset, paths in list_task_tables(storage, datasets).items():
        drops: Counter[str] = Counter()
        for path in paths:
            parquet = pq.ParquetFile(path, filesystem=storage.fs)
            drops.update(read_counters(parquet.schema_arrow)[0])
            table = parquet.read(columns=PLAN_COLUMNS)
            n = len(table)
            table = table.append_column("dataset", pa.array([dataset] * n, pa.string()))
            table = table.append_column("file", pa.array(np.full(n, len(files), dtype=np.int32)))
            table = table.append_column("row", pa.array(np.arange(n, dtype=np.int32)))
            tables.append(table)
            files.append(path)
        table_drops[dataset] = dict(sorted(drops.items()))
    if not tables:
        raise MixError(f"no task tables under {storage.path('tasks')}; build task samples first")
    return pa.concat_tables(tables), files, table_drops


def _deduplicate(index: pa.Table, scope: str) -> tuple[pa.Table, dict[str, int]]:
    if scope == "off":
        return index, {}
    keys = ["image_sha256"] + (["task", "language"] if scope == "image_task_language" else [])
    index = index.append_column("position", pa.array(np.arange(len(index), dtype=np.int64)))
    first = index.group_by(keys, use_threads=False).aggregate([("position", "min")])["position_min"]
    keep = np.zeros(len(index), dtype=bool)
    keep[first.to_numpy()] = True
    removed = Counter(index.filter(pa.array(~keep))["dataset"].to_pylist())
    return index.filter(pa.array(keep)).drop_columns(["position"]), dict(sorted(removed.items()))
