"""How the mixer's passes scale with the number of task tables T and output blocks B.

    .venv/bin/python bench/shards/tables_scale.py [--quick] [--part reads|plan|all]

1. **Reads per pass** (measured, not derived): ``mix_and_write`` runs in this process (Ray not
   up, so every pass runs here) on T real task tables (small rows, real JPEGs in one blob file per
   table) with B output blocks. The storage root is opened through a counting fsspec filesystem
   (a ``LocalFileSystem`` subclass registered as ``countfs://``: pyarrow wraps it in its
   ``FSSpecHandler`` rather than swapping in its native local filesystem, so every Parquet read
   goes through it). Per pass (the driver's ``execute`` wrapped) and per kind of file it counts
   opens for reading, read calls (what object storage turns into range GETs), bytes read, stat
   calls (``info``/``exists``/``isfile``: HEADs there; pyarrow checks each file before opening it)
   and directory listings (their per-entry stats are not counted: a listing is a paged LIST there). The shard output directory
   is plain local disk and not counted; the driver's marker reads are counted under ``driver``.
2. **The driver's planning** at T = 10^3, 10^4, 10^5 tables of ~1,000 rows (10^8 samples at
   10^5): ``plan_inputs`` then ``plan_mixture`` in a fresh process each, with every unit already
   done, which is what the driver does itself in a real run (list and size the tables, hash the
   plan, check each unit's marker, read the index, dedup and route markers, allocate). The task
   tables are empty files (the driver lists and sizes them, never opens them) and the markers are
   written here in the format the passes write (``index/<u>.json``, ``dups/<b>.json``,
   ``route/<u>.json``). Reported: wall time, peak RSS (VmHWM) and its growth over the process's RSS
   after imports, and tracemalloc's peak in another process (the fastest of three untraced runs is shown); ratios
   against the smallest T.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from driver_rss import base_images, distinct_jpeg  # noqa: E402

# ---------------------------------------------------------------- part 1: a counting filesystem

PASS = ["driver"]  # the pass running now (set by the wrapped execute)
STATS: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (pass, kind) -> opens, reads, bytes, infos
_KINDS = [(re.compile(r"/tasks/[^/]+/[^/]+\.parquet$"), "task table"), (re.compile(r"/_mix/[^/]+/index/\d+\.parquet$"), "index"),
          (re.compile(r"/_mix/[^/]+/dups/\d+\.parquet$"), "dups"), (re.compile(r"/_mix/[^/]+/route/\d+\.parquet$"), "route"),
          (re.compile(r"/_mix/.*\.json$"), "marker"), (re.compile(r"/images/"), "image")]


def kind_of(path: str) -> str:
    return next((kind for pattern, kind in _KINDS if pattern.search(path)), "other")


class _CountingFile(LocalFileOpener):
    kind = "other"

    def read(self, *args, **kwargs):
        data = super().read(*args, **kwargs)
        stats = STATS[PASS[0], self.kind]
        stats["reads"] += 1
        stats["bytes"] += len(data)
        return data

    def readinto(self, buffer):
        n = self.f.readinto(buffer)
        stats = STATS[PASS[0], self.kind]
        stats["reads"] += 1
        stats["bytes"] += n or 0
        return n


class CountingFileSystem(LocalFileSystem):
    protocol = ("countfs",)

    def _open(self, path, mode="rb", block_size=None, **kwargs):
        path = self._strip_protocol(path)
        if self.auto_mkdir and "w" in mode:
            self.makedirs(self._parent(path), exist_ok=True)
        handle = _CountingFile(path, mode, fs=self, **kwargs)
        if "r" in mode:
            handle.kind = kind_of(path)
            STATS[PASS[0], handle.kind]["opens"] += 1
        return handle

    # Metadata calls (HEADs on object storage), not counted inside a listing (a paged LIST there).
    _listing = False

    def _stat(self, path) -> None:
        if not CountingFileSystem._listing:
            STATS[PASS[0], kind_of(self._strip_protocol(path))]["infos"] += 1

    def info(self, path, **kwargs):
        self._stat(path)
        return super().info(path, **kwargs)

    def isfile(self, path):
        self._stat(path)
        return super().isfile(path)

    def ls(self, path, detail=False, **kwargs):
        STATS[PASS[0], kind_of(self._strip_protocol(path) + "/")]["lists"] += 1
        CountingFileSystem._listing = True
        try:
            return super().ls(path, detail=detail, **kwargs)
        finally:
            CountingFileSystem._listing = False


fsspec.register_implementation("countfs", CountingFileSystem, clobber=True)


def make_tables(root: Path, tables: int, rows: int) -> None:
    """``tables`` task tables of ``rows`` rows each (three datasets, two tasks), real distinct JPEGs."""
    import hashlib

    from driver_rss import DATASETS

    from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
    from pipelines.storage import Storage

    storage, bases, number = Storage(str(root)), base_images(), 0
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = list(DATASETS)
    bounds = np.cumsum([round(tables * DATASETS[n][2]) for n in names[:-1]]).tolist()
    for t in range(tables):
        dataset = names[sum(t >= b for b in bounds)]
        task, language, _ = DATASETS[dataset]
        blob_path, samples, offset = root / "images" / f"{t:06d}.bin", [], 0
        with blob_path.open("wb") as blob:
            for i in range(rows):
                data, width, height = bases[number % len(bases)]
                data, number = distinct_jpeg(data, number), number + 1
                blob.write(data)
                samples.append(TaskSample(
                    source=dataset, key=f"{t:06d}{i:04d}", task=task, language=language,
                    images=[Picture(ImageRef(str(blob_path), offset, len(data)), "jpg",
                                    hashlib.sha256(data).hexdigest(), width, height)],
                    conversations=[human_turn(f"{task} prompt {i}"), {"from": "gpt", "value": f"{dataset} {i} " * 3}]))
                offset += len(data)
        write_task_table(storage, dataset, f"{t:06d}", samples)


def count_reads(root: Path, out: Path, tables: int, blocks: int, rows: int) -> dict:
    """One ``mix_and_write`` in this process over the counting filesystem: stats per (pass, kind)."""
    import pipelines.stage
    import shards.plan
    import shards.write
    from shards import ShardSettings, mix_and_write
    from shards.mix import MixSettings

    total = tables * rows
    assert total % (2 * blocks) == 0, (total, blocks)
    real, seconds = pipelines.stage.execute, Counter()

    def counted_execute(stage, ctx):
        PASS[0], start = stage.name.removeprefix("mix-"), time.perf_counter()
        try:
            return real(stage, ctx)
        finally:
            seconds[PASS[0]] += time.perf_counter() - start
            PASS[0] = "driver"

    STATS.clear()
    shards.plan.execute = shards.write.execute = counted_execute
    try:
        manifest = mix_and_write(f"countfs://{root}", str(out), MixSettings(
            total_samples=total, shares={"captioning": 0.7, "ocr_small": 0.3}, seed=1),
            ShardSettings(max_samples=total // (2 * blocks), shards_per_task=2, report=False))
    finally:
        shards.plan.execute = shards.write.execute = real
    assert sum(s["samples"] for s in manifest["shards"]) == total
    shutil.rmtree(out, ignore_errors=True)
    return {"stats": {f"{p}/{k}": dict(c) for (p, k), c in sorted(STATS.items())}, "seconds": dict(seconds)}


def predicted_opens(tables: int, blocks: int) -> dict[str, int]:
    """The Parquet opens the code's structure implies: G = ceil(T / 32) index and route files and dedup
    buckets; each ``pads.dataset`` over a file list opens its first file once more (schema), and
    ``pq.read_table(path)`` opens its file twice (discovery, then the read)."""
    g = math.ceil(tables / 32)
    return {"index": tables, "dedup": g * (g + 1), "route": 2 * tables + g * (g + 1),
            "cut": blocks * (g + 1), "write": blocks * (g + 1)}


PARQUET = ("task table", "index", "dups", "route")


def reads_table(results: list[dict]) -> str:
    lines = ["| T | B | pass | Parquet opens (predicted) | Parquet read calls | Parquet MiB | stat calls | listings | "
             "image opens / reads | s |", "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        predicted = predicted_opens(r["tables"], r["blocks"])
        for name in ("index", "dedup", "route", "cut", "write", "driver"):
            rows = {k.split("/", 1)[1]: v for k, v in r["stats"].items() if k.split("/", 1)[0] == name}
            parquet = [rows.get(k, {}) for k in PARQUET]
            opens = sum(c.get("opens", 0) for c in parquet)
            if name == "driver":  # the driver's marker reads (JSON, not Parquet)
                opens = sum(c.get("opens", 0) for c in rows.values())
                parquet = [rows.get("marker", {})]
            lines.append(f"| {r['tables']} | {r['blocks']} | {name} | {opens:,} ({predicted.get(name, '-')}) | "
                         f"{sum(c.get('reads', 0) for c in parquet):,} | {sum(c.get('bytes', 0) for c in parquet) / 2**20:.1f} | "
                         f"{sum(c.get('infos', 0) for c in rows.values()):,} | {sum(c.get('lists', 0) for c in rows.values()):,} | "
                         f"{rows.get('image', {}).get('opens', 0):,} / {rows.get('image', {}).get('reads', 0):,} | "
                         f"{r['seconds'].get(name, 0):.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- part 2: the driver's planning

# dataset -> (task, language, share of the tables); the default task shares (shards.mix.REPORT_TASK_SHARES)
PLAN_DATASETS = {"laion_en": ("captioning", "en", 0.40), "laion_zh": ("captioning", "zh", 0.10),
                 "coyo-zh": ("captioning", "zh", 0.20), "objects365": ("detection", "en", 0.02),
                 "grit-zh": ("detection", "zh", 0.02), "wukong_ocr": ("ocr_large", "zh", 0.12),
                 "laioncoco_ocr": ("ocr_large", "en", 0.08), "synthdog": ("ocr_small", "en", 0.04),
                 "lsvt": ("ocr_small", "zh", 0.02)}
BLOCK = 100_000  # max_samples 10^4 x shards_per_task 10 (the defaults)


def make_plan_inputs(root: Path, tables: int, rows: int) -> int:
    """Empty task-table files and every unit's marker, as the index, dedup and route passes write them."""
    from pipelines.storage import Storage
    from shards.mix import MixSettings
    from shards.passes import groups, unit_name, write_marker
    from shards.plan import TABLES_PER_BUCKET, plan_inputs

    rng, names = np.random.default_rng(0), list(PLAN_DATASETS)
    counts = [max(1, round(tables * PLAN_DATASETS[n][2])) for n in names]
    counts[0] += tables - sum(counts)
    for name, count in zip(names, counts, strict=True):
        (root / "tasks" / name).mkdir(parents=True)
        for u in range(count):
            (root / "tasks" / name / f"{u:06d}.parquet").write_bytes(b"")
    storage = Storage(str(root))
    sizes = rng.integers(rows * 9 // 10, rows * 11 // 10 + 1, tables)
    settings = MixSettings(total_samples=int(sizes.sum()), seed=1)
    listed, plan_hash = plan_inputs(storage, settings, BLOCK)
    work = f"_mix/{plan_hash[:16]}"
    records = [{"file": i, "dataset": d, "rows": int(sizes[i]), "drops": {"empty_caption": int(sizes[i]) % 7},
                "counts": {f"{PLAN_DATASETS[d][0]}|{PLAN_DATASETS[d][1]}": int(sizes[i])}}
               for i, (d, _) in enumerate(listed)]
    for g in range(groups(tables)):
        part = records[g * 32:(g + 1) * 32]
        write_marker(storage, storage.path(work, "index", f"{unit_name(g)}.json"), {"tables": part})
        languages = Counter()
        for r in part:
            languages[PLAN_DATASETS[r["dataset"]][1]] += r["rows"]
        write_marker(storage, storage.path(work, "route", f"{unit_name(g)}.json"),
                     {"picks": sum(languages.values()), "languages": dict(sorted(languages.items()))})
    for b in range(max(1, math.ceil(tables / TABLES_PER_BUCKET))):  # a few duplicates in each bucket
        removed, by_dataset = Counter(), Counter()
        for i in rng.choice(tables, 8).tolist():
            dataset = records[i]["dataset"]
            removed[f"{i}|{PLAN_DATASETS[dataset][0]}|{PLAN_DATASETS[dataset][1]}"] += 1
            by_dataset[dataset] += 1
        write_marker(storage, storage.path(work, "dups", f"{b:05d}.json"),
                     {"removed": dict(sorted(removed.items())), "by_dataset": dict(sorted(by_dataset.items()))})
    return int(sizes.sum())


_PLAN_CHILD = """
import json, sys, time, tracemalloc
sys.path.insert(0, {repo!r})
from pipelines.storage import Storage
from shards.mix import MixSettings
from shards.plan import plan_inputs, plan_mixture
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
storage, settings = Storage({root!r}), MixSettings(total_samples={total}, seed=1)
if {trace}:
    tracemalloc.start()
base, start = status("VmRSS"), time.perf_counter()
inputs = plan_inputs(storage, settings, {block})
listed, inputs_hwm = time.perf_counter(), status("VmHWM")
plan = plan_mixture(storage, settings, {block}, inputs)
end = time.perf_counter()
assert len(plan) == {total} and len(plan.routed) == -(-len(inputs[0]) // 32), (len(plan), len(plan.routed))
print(json.dumps({{"base_kib": base, "hwm_kib": status("VmHWM"), "inputs_hwm_kib": inputs_hwm, "inputs_s": listed - start, "plan_s": end - listed,
                  "traced_peak": tracemalloc.get_traced_memory()[1] if {trace} else None, "blocks": plan.blocks}}))
"""


def measure_plan(root: Path, total: int, trace: bool) -> dict:
    script = _PLAN_CHILD.format(repo=str(REPO), root=str(root), total=total, block=BLOCK, trace=trace)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the planning driver failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan_table(results: list[dict]) -> str:
    lines = ["| T | samples | blocks | plan_inputs s | plan_mixture s | total s (x T0) | peak RSS MiB (x T0) | "
             "RSS growth MiB (x T0) | of it by plan_inputs MiB | tracemalloc peak MiB (x T0) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    first = results[0]

    def ratio(key, r):
        return r[key] / first[key] if first[key] else float("nan")

    for r in results:
        r["total_s"], r["growth_kib"] = r["inputs_s"] + r["plan_s"], r["hwm_kib"] - r["base_kib"]
    for r in results:
        lines.append(f"| {r['tables']:,} | {r['samples']:,} | {r['blocks']:,} | {r['inputs_s']:.2f} | {r['plan_s']:.2f} | "
                     f"{r['total_s']:.2f} ({ratio('total_s', r):.1f}) | {r['hwm_kib'] / 1024:.0f} ({ratio('hwm_kib', r):.2f}) | "
                     f"{r['growth_kib'] / 1024:.1f} ({ratio('growth_kib', r):.1f}) | {(r['inputs_hwm_kib'] - r['base_kib']) / 1024:.1f} | "
                     f"{r['traced_peak'] / 2**20:.1f} ({ratio('traced_peak', r):.1f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T in {64, 320}, B in {1, 4}; planning at 10^3, 10^4")
    parser.add_argument("--part", choices=["reads", "plan", "all"], default="all")
    parser.add_argument("--rows-per-table", type=int, default=16, help="rows of each real task table (part 1)")
    parser.add_argument("--plan-rows", type=int, default=1000, help="rows per task table of the planning run (part 2)")
    args = parser.parse_args()
    sizes, block_counts = ((64, 320), (1, 4)) if args.quick else ((64, 320, 1600), (1, 4, 16))
    plan_sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    with tempfile.TemporaryDirectory(prefix="bench-tables-scale-") as tmp:
        if args.part in ("reads", "all"):
            results = []
            for tables in sizes:
                root, start = Path(tmp) / f"reads-{tables}", time.perf_counter()
                make_tables(root, tables, args.rows_per_table)
                print(f"{tables} task tables x {args.rows_per_table} rows ({time.perf_counter() - start:.0f} s to make)",
                      flush=True)
                for blocks in block_counts:
                    result = count_reads(root, Path(tmp) / "out", tables, blocks, args.rows_per_table)
                    results.append({"tables": tables, "blocks": blocks, **result})
                    print(f"  B={blocks}: {sum(result['seconds'].values()):.1f} s in the passes", flush=True)
                shutil.rmtree(root)
            print("\nReads per pass (measured; predicted Parquet opens in brackets):\n" + reads_table(results), flush=True)
            print("\n" + json.dumps(results), flush=True)
        if args.part in ("plan", "all"):
            results = []
            for tables in plan_sizes:
                root, start = Path(tmp) / f"plan-{tables}", time.perf_counter()
                total = make_plan_inputs(root, tables, args.plan_rows)
                made = time.perf_counter() - start
                runs = [measure_plan(root, total, trace=False) for _ in range(3)]  # the fastest of three
                result = {"tables": tables, "samples": total, **min(runs, key=lambda r: r["inputs_s"] + r["plan_s"])}
                result["traced_peak"] = measure_plan(root, total, trace=True)["traced_peak"]
                results.append(result)
                print(f"T={tables}: inputs made in {made:.0f} s; {json.dumps(result)}", flush=True)
                shutil.rmtree(root)
            print("\nThe driver's planning (every unit done; fresh process per row):\n" + plan_table(results), flush=True)


if __name__ == "__main__":
    main()
