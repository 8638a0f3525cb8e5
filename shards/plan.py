"""Planning a mixture on the cluster: the driver holds a few numbers per task table, never a row.

:func:`plan_mixture` runs the passes of :mod:`shards.passes` through the one executor and does
the arithmetic between them on the driver:

1. ``index`` (a Ray task per task table): rows per (table, task, language); dedup keys hashed
   into buckets.
2. ``dedup`` (a task per bucket): the exact duplicates, counted per (table, task, language).
3. On the driver, from those counts: samples per task (the shares), per dataset (the weights),
   ``full`` copies of every surviving row plus a remainder ``rest``, and how much of ``rest``
   each table gives (one multivariate hypergeometric draw per (task, dataset), so the remainder
   is a uniform sample of the whole dataset). Each (table, task) becomes a segment of the pick
   order with its offset.
4. ``route`` (a task per table): the table draws its picks, places pick ``j`` at position
   ``permute(j)`` and writes them grouped by output block.

The result is a :class:`MixPlan`: the manifest's statistics and where the routed picks are. The
plan's work folder ``<root>/_mix/<hash>/`` is named by the settings and the task tables' names,
sizes and versions, so a rerun of the same plan resumes it unit by unit, and changed inputs get a
new one. The plan itself is a function of the settings and the tables' contents only (each
table's content fingerprint, read by the index pass): :attr:`MixPlan.plan_hash` and
:attr:`MixPlan.inputs_fingerprint` are equal for the same samples in another row order, download
order or storage root, and so are the picks (drawn in id order, never by row position).

>>> plan = plan_mixture("/data/mix", MixSettings(total_samples=100_000, seed=1))  # doctest: +SKIP
>>> plan.tasks["detection"]  # doctest: +SKIP
{'target_share': 0.052, 'target_samples': 5200, 'samples': 5200, 'achieved_share': 0.052}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pipelines.layout.removals import REMOVALS_DIR, removals_path
from pipelines.layout.task_table import TASKS_DIR, list_task_tables
from pipelines.stage import execute
from pipelines.storage import Storage
from shards.mix import MixError, MixSettings, largest_remainder, repeat_counts
from shards.passes import (
    TABLES_PER_UNIT,
    DedupPass,
    IndexPass,
    MixContext,
    RoutePass,
    groups,
    read_markers,
    seeded_stream,
    unit_name,
)
from shards.yields import check_kept_shares

TABLES_PER_BUCKET = 32  # dedup buckets: one per this many task tables (a bucket holds their keys)


@dataclass
class MixPlan:
    """A drawn mixture: its statistics, and ``ctx`` (where its routed picks are, how many)."""

    ctx: MixContext
    plan_hash: str  # content_hash: the settings and the inputs' content, never where or when they were written
    tasks: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)
    languages: dict[str, dict] = field(default_factory=dict)
    drops: dict[str, dict] = field(default_factory=dict)
    routed: list[int] = field(default_factory=list)  # the route units (groups of task tables) with picks
    inputs_fingerprint: str = ""  # the task tables' content (inputs_fingerprint)

    def __len__(self) -> int:
        return self.ctx.total

    @property
    def blocks(self) -> int:
        return -(-self.ctx.total // self.ctx.block)

    def route_paths(self, storage: Storage) -> list[str]:
        return [self.ctx.path(storage, "route", f"{unit_name(f)}.parquet") for f in self.routed]

    def ids(self) -> list[str]:
        """Every output sample's id in mixture order. Reads all routed picks: for small mixtures and tests."""
        storage = self.ctx.storage()
        tables = [pq.read_table(p, columns=["position", "key"], filesystem=storage.fs) for p in self.route_paths(storage)]
        pairs = sorted((pos, key) for t in tables for pos, key in zip(t["position"].to_pylist(), t["key"].to_pylist(),
                                                                      strict=True))
        return [key for _, key in pairs]


def plan_inputs(storage: Storage, settings: MixSettings, block: int, salt: str = "") -> tuple[list[tuple[str, str]], str]:
    """The task tables of the mixture as ``(dataset, path)``, and the plan hash: what the plan depends on
    (the settings, the block size, every table's name and size, and ``salt``: the shard settings
    when the shard writer's passes share the work folder). Lists the tables; reads none."""
    tables = [(dataset, path) for dataset, paths in list_task_tables(storage, settings.datasets).items()
              for path in paths]
    if not tables:
        raise MixError(f"no task tables under {storage.path(TASKS_DIR)}; build task samples first")
    return tables, _plan_hash(storage, settings, block, tables, salt)


def plan_mixture(root: str | Storage, settings: MixSettings, block: int = 100_000, inputs=None) -> MixPlan:
    """Index, deduplicate, count, select and route: the whole mixture, before any shard is written.

    ``block`` is the number of output positions per block (what one shard-writer task writes);
    ``inputs`` is :func:`plan_inputs`'s answer when the caller has it already."""
    storage = root if isinstance(root, Storage) else Storage(root)
    tables, work_hash = inputs or plan_inputs(storage, settings, block)
    ctx = MixContext(storage.root_uri(), storage.options, f"_mix/{work_hash[:16]}", settings.dedup,
                     max(1, math.ceil(len(tables) / TABLES_PER_BUCKET)), len(tables), block,
                     settings.total_samples or 0, settings.seed, removals=settings.decontaminated)
    names = [unit_name(g) for g in range(groups(len(tables)))]
    execute(IndexPass(tables), ctx)
    index = [record for unit in read_markers(storage, [ctx.path(storage, "index", f"{n}.json") for n in names])
             for record in unit["tables"]]
    upstream = {dataset: lost for dataset, lost in settings.upstream_losses.items()
                if settings.datasets is None or dataset in settings.datasets}
    check_kept_shares(index, settings.min_kept_share, settings.min_kept_shares, upstream)
    rows: Counter = Counter()  # (file, task, language) -> rows that survive dedup
    table_drops: dict[str, Counter] = defaultdict(Counter)
    decontam: dict[str, Counter] = defaultdict(Counter)  # what the decontamination stage removed, per dataset
    for record in index:
        table_drops[record["dataset"]].update(record["drops"])
        decontam[record["dataset"]].update(record.get("decontam", {}))
        for triple, n in record["counts"].items():
            task, language = triple.split("|")
            rows[record["file"], task, language] += n
    dedup_drops: Counter = Counter()
    if settings.dedup != "off":
        execute(DedupPass(), ctx)
        for record in read_markers(storage, [ctx.path(storage, "dups", f"{b:05d}.json") for b in range(ctx.buckets)]):
            dedup_drops.update(record["by_dataset"])
            for triple, n in record["removed"].items():
                file, task, language = triple.split("|")
                rows[int(file), task, language] -= n
    drops = {"tasks": {d: dict(sorted(c.items())) for d, c in sorted(table_drops.items())},
             "dedup": dict(sorted(dedup_drops.items()))}
    if any(decontam.values()):
        drops["decontam"] = {d: dict(sorted(c.items())) for d, c in sorted(decontam.items()) if c}
    outside = Counter()
    for (_, task, _), n in rows.items():
        if task not in settings.shares and n:
            outside[f"task_not_in_mixture:{task}"] += n
    if outside:
        drops["mix"] = dict(sorted(outside.items()))
    segments, tasks, sources, expected = _allocate(settings, tables, rows, dedup_drops)
    if any(decontam.values()):  # per source, beside the exact duplicates
        for name, entry in sources.items():
            entry.update(near_duplicates_removed=decontam[name]["near_duplicate"],
                         contamination_removed=decontam[name]["contamination"])
    ctx = dataclasses.replace(ctx, total=sum(task["samples"] for task in tasks.values()))  # repeat_time: known now
    execute(RoutePass(tables, segments), ctx)
    routed = sorted({file // TABLES_PER_UNIT for file in segments})
    realised: Counter = Counter()
    for record in read_markers(storage, [ctx.path(storage, "route", f"{unit_name(f)}.json") for f in routed]):
        realised.update(record["languages"])
    total = ctx.total
    languages = {language: {"target_share": expected[language] / total, "samples": realised[language],
                            "achieved_share": realised[language] / total}
                 for language in sorted(set(expected) | set(realised))}
    fingerprint = inputs_fingerprint(tables, index)
    return MixPlan(ctx, content_hash(settings, block, fingerprint), tasks, sources, languages, drops, routed,
                   fingerprint)


def _allocate(settings: MixSettings, tables, rows: Counter, dedup_drops: Counter):
    """Per (table, task) segments ``(task, offset, full, rest)``, and the tasks' and sources' statistics."""
    by_task: dict[str, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    languages_of: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for (file, task, language), n in sorted(rows.items()):
        if n > 0 and task in settings.shares:
            dataset = tables[file][0]
            by_task[task][dataset][file] = by_task[task][dataset].get(file, 0) + n
            languages_of[task, dataset][language] += n
    sizes_of: dict[str, dict[str, int]] = {}
    for task, share in settings.shares.items():
        if not by_task.get(task):
            present = sorted({t for (_, t, _), n in rows.items() if n > 0})
            raise MixError(f"task {task!r} has a target share of {share} but no samples in the task tables "
                           f"(tasks present: {present}); build its sources first")
        sizes_of[task] = {name: sum(files.values()) for name, files in sorted(by_task[task].items())}
    counts_of = _counts(settings, sizes_of)
    total = sum(sum(counts.values()) for counts in counts_of.values())
    if total == 0:
        raise MixError("the repeat times give an empty mixture")
    segments: dict[int, list] = defaultdict(list)
    tasks, sources, expected = {}, {}, Counter()
    offset = 0
    for task, share in settings.shares.items():
        datasets, sizes, counts = by_task[task], sizes_of[task], counts_of[task]
        samples = sum(counts.values())
        target = share / sum(settings.shares.values()) if settings.repeat_time is None else samples / total
        tasks[task] = {"target_share": target, "target_samples": samples, "samples": samples,
                       "achieved_share": samples / total}
        for name, available in sizes.items():
            full, rest = divmod(counts[name], available)
            files = sorted(datasets[name])
            split = seeded_stream(settings.seed, f"{task}/{name}").multivariate_hypergeometric(
                [datasets[name][f] for f in files], rest) if rest else [0] * len(files)
            for file, part in zip(files, split, strict=True):
                picks = full * datasets[name][file] + int(part)
                if picks:
                    segments[file].append((task, offset, full, int(part)))
                    offset += picks
            entry = sources.setdefault(name, {"tasks": {}, "available": 0, "target_samples": 0, "samples": 0,
                                              "unique_samples": 0})
            entry["tasks"][task] = counts[name]
            entry["available"] += available
            entry["target_samples"] += counts[name]
            entry["samples"] += counts[name]
            entry["unique_samples"] += min(counts[name], available)
            entry["weight"] = settings.weights.get(name, 1.0)
            if settings.repeat_time is not None:
                entry["target_repeat_time"] = settings.repeat_time.get(name, 1.0)
            entry["duplicates_removed"] = dedup_drops.get(name, 0)
            for language, n in languages_of[task, name].items():
                expected[language] += counts[name] * n / available
    # A repeat time for a dataset that has no samples (a translation that flagged every sample) weighs
    # nothing; a weight for one is a mistake in the settings.
    unknown = sorted(set(settings.weights) - set(sources))
    if unknown:
        raise MixError(f"weights name datasets with no samples for any task of the mixture: {unknown}")
    for entry in sources.values():
        entry.update(target_share=entry["target_samples"] / total, achieved_share=entry["samples"] / total,
                     repeat_time=entry["samples"] / entry["available"])
    assert offset == total, (offset, total)
    return dict(segments), tasks, dict(sorted(sources.items())), expected


def _counts(settings: MixSettings, sizes_of: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Samples per task and dataset: by repeat time, or the task's share split by weight."""
    if settings.repeat_time is not None:
        return {task: repeat_counts(sizes, settings.repeat_time) for task, sizes in sizes_of.items()}
    task_counts = largest_remainder(settings.total_samples, settings.shares)
    counts_of = {}
    for task, sizes in sizes_of.items():
        weights = {name: settings.weights.get(name, 1.0) * (sizes[name] if settings.weight_by_size else 1)
                   for name in sizes}
        counts_of[task] = largest_remainder(task_counts[task], weights)
    return counts_of


def _plan_hash(storage: Storage, settings: MixSettings, block: int, tables, salt: str) -> str:
    """The settings, the block size and every task table's name, size and version (its mtime, or its
    ETag on object storage): names the work folder, so a rewritten table gets a new plan. What the
    mixture is a function of, the tables' contents, is :func:`content_hash`."""
    infos = storage.fs.glob(storage.path(TASKS_DIR, "*", "*.parquet"), detail=True)
    inputs = [(_table_name(path), int(infos[path]["size"]), str(infos[path].get("ETag") or infos[path].get("mtime")
                                                                or infos[path].get("LastModified") or ""))
              for _, path in tables]
    # The decontamination stage's removal lists are inputs too (pipelines.layout.removals).
    removals = storage.fs.glob(storage.path(REMOVALS_DIR, "*", "*.parquet"), detail=True) if settings.decontaminated else {}
    for _, path in tables:
        info = removals.get(removals_path(storage, path))
        if info:
            inputs.append(("removals", _table_name(path), int(info["size"]),
                           str(info.get("ETag") or info.get("mtime") or info.get("LastModified") or "")))
    canonical = json.dumps([settings.fingerprint(), block, salt, inputs], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _table_name(path: str) -> str:
    return path.split("/")[-2] + "/" + path.split("/")[-1]


def inputs_fingerprint(tables, index: list[dict]) -> str:
    """sha256 of every task table's name and content fingerprint (the index pass reads it): equal for
    the same samples in another row order, download order or storage root."""
    contents = sorted((_table_name(tables[record["file"]][1]), record["content"]) for record in index)
    return hashlib.sha256(json.dumps(contents, separators=(",", ":")).encode()).hexdigest()


def content_hash(settings: MixSettings, block: int, fingerprint: str) -> str:
    """What the mixture is a function of: the settings, the block size and the inputs' content."""
    canonical = json.dumps([settings.fingerprint(), block, fingerprint], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
