"""The mixer's driver memory: peak RSS of the process that calls ``mix_and_write``, at N and 10N.

Two setups, each a fresh driver process (``VmHWM`` of that process only), on the same task tables:

- in-process: Ray not initialised, so the five passes (index, dedup, route, cut, write) run in the
  driver itself: its peak is the passes' own.
- Ray: the driver joins a ``ray start --head`` cluster (a head with no CPUs, one worker node with
  ``cpus`` CPUs) by address, so every pass runs in the worker node's processes and the driver only
  plans: its peak is what it holds itself (a few numbers per task table, by design).

The task tables are generated here: ``rows`` distinct samples (three datasets, two tasks, two
languages) in tables of ``rows_per_table`` rows, each row's image a real small JPEG (one of 256
noise pictures made distinct by a JPEG comment carrying the row number) stored at an offset of one
blob file per table. The mixture draws as many samples as there are rows, so N and 10N grow the
input and the output alike (10x the tables, 10x the samples and shards).

    .venv/bin/python bench/shards/driver_rss.py [--samples 20000] [--rows-per-table 500]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

# dataset -> (task, language, share of the rows)
DATASETS = {"laion_en": ("captioning", "en", 0.5), "wukong": ("captioning", "zh", 0.2),
            "synthdog": ("ocr_small", "en", 0.3)}
SHARES = {"captioning": 0.7, "ocr_small": 0.3}


def base_images(count: int = 256) -> list[tuple[bytes, int, int]]:
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        width, height = 24 + i % 17, 16 + i % 11
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
        images.append((buffer.getvalue(), width, height))
    return images


def distinct_jpeg(base: bytes, number: int) -> bytes:
    """``base`` with a COM segment after SOI naming ``number``: a valid JPEG of the same picture."""
    comment = f"vlmix-bench {number}".encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def make_tables(root: Path, rows: int, rows_per_table: int) -> int:
    """Task tables of ``rows`` samples under ``root/tasks``; returns the number of tables."""
    from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
    from pipelines.storage import Storage

    storage = Storage(str(root))
    (root / "images").mkdir(parents=True, exist_ok=True)
    bases = base_images()
    number, tables = 0, 0
    for dataset, (task, language, share) in DATASETS.items():
        count = round(rows * share)
        for unit, start in enumerate(range(0, count, rows_per_table)):
            blob_path = root / "images" / f"{dataset}-{unit:05d}.bin"
            samples, offset = [], 0
            with blob_path.open("wb") as blob:
                for i in range(start, min(count, start + rows_per_table)):
                    data, width, height = bases[number % len(bases)]
                    data = distinct_jpeg(data, number)
                    number += 1
                    blob.write(data)
                    samples.append(TaskSample(
                        source=dataset, key=f"{i:08d}", task=task, language=language,
                        images=[Picture(ImageRef(str(blob_path), offset, len(data)), "jpg",
                                        hashlib.sha256(data).hexdigest(), width, height)],
                        conversations=[human_turn(f"{task} prompt {i % 97}"),
                                       {"from": "gpt", "value": f"{dataset} answer {i} " * 3}]))
                    offset += len(data)
            write_task_table(storage, dataset, f"{unit:05d}", samples)
            tables += 1
    return tables


# The driver: one fresh process per measurement.
_DRIVER = """
import json, sys, time
sys.path.insert(0, {repo!r})
from pipelines.runtime import ensure_ray
from shards import ShardSettings, mix_and_write
from shards.mix import MixSettings
import pipelines.stage, shards.plan, shards.write
address = {address!r}
if address:
    ensure_ray(address)  # joining is not the mixer's cost; the peak below still counts Ray's client
passes, real_execute = {{}}, pipelines.stage.execute
def timed_execute(stage, ctx):  # seconds per pass, from the driver
    start = time.perf_counter()
    report = real_execute(stage, ctx)
    passes[stage.name] = passes.get(stage.name, 0) + time.perf_counter() - start
    return report
shards.plan.execute = shards.write.execute = timed_execute
start = time.perf_counter()
manifest = mix_and_write({root!r}, {out!r}, MixSettings(total_samples={total}, shares={shares!r}, seed=1),
                         ShardSettings(max_samples={max_samples}, shards_per_task={shards_per_task}, report=False))
seconds = time.perf_counter() - start
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"vmhwm_kib": hwm, "seconds": seconds, "passes": passes, "shards": len(manifest["shards"]),
                  "samples": sum(s["samples"] for s in manifest["shards"]),
                  "digest": [s["sha256"] for s in manifest["shards"]]}}))
"""


def measure(root: Path, out: Path, total: int, address: str | None, env: dict, args) -> dict:
    script = _DRIVER.format(repo=str(REPO), address=address, root=str(root), out=str(out), total=total,
                            shares=SHARES, max_samples=args.mix_max_samples, shards_per_task=args.shards_per_task)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the driver failed ({'Ray' if address else 'in-process'}, {total}):\n{done.stderr[-4000:]}")
    sys.path.insert(0, str(REPO / "tests" / "scale"))
    from test_cluster import last_json  # Ray may print warnings after the driver's result line

    result = last_json(done.stdout)
    shutil.rmtree(out, ignore_errors=True)
    return result


def compare(tmp: Path, n: int, args) -> list[dict]:
    """In-process and Ray driver peaks at N and 10N; one row per (samples, setup)."""
    sys.path.insert(0, str(REPO / "bench" / "scale"))
    from local_cluster import BenchCluster

    rows = []
    cluster = BenchCluster(Path("/tmp") / f"vlmix-rss-{os.getpid()}")  # short: Ray's socket paths
    try:
        cluster.start_nodes(workers=1, cpus=args.cpus)
        for count in (n, 10 * n):
            root = tmp / f"tables-{count}"
            start = time.perf_counter()
            tables = make_tables(root, count, args.rows_per_table)
            made = time.perf_counter() - start
            print(f"{count} rows in {tables} task tables ({made:.0f} s to make)", flush=True)
            results = {}
            for setup, address, env in (("in-process", None, dict(os.environ)), ("Ray", cluster.address, cluster.env)):
                result = measure(root, tmp / f"out-{count}", count, address, env, args)
                results[setup] = result
                rows.append({"samples": count, "tables": tables, "setup": setup, **result})
                print(f"  {setup:>10}: driver peak {result['vmhwm_kib'] / 1024:.0f} MiB, {result['seconds']:.1f} s "
                      f"({', '.join(f'{k} {v:.1f}' for k, v in result['passes'].items())}), "
                      f"{result['shards']} shards, {result['samples']} samples", flush=True)
            same = results["in-process"]["digest"] == results["Ray"]["digest"]
            print(f"  shards identical in-process and on Ray: {same}", flush=True)
            for row in rows[-2:]:
                row["identical"] = same
            shutil.rmtree(root)
    finally:
        cluster.stop()
    return rows


def table(rows: list[dict], n: int) -> str:
    lines = ["| setup | N (MiB) | 10N (MiB) | 10N / N | N (s) | 10N (s) |", "| --- | --- | --- | --- | --- | --- |"]
    for setup in ("in-process", "Ray"):
        small = next(r for r in rows if r["setup"] == setup and r["samples"] == n)
        large = next(r for r in rows if r["setup"] == setup and r["samples"] == 10 * n)
        lines.append(f"| {setup} | {small['vmhwm_kib'] / 1024:.0f} | {large['vmhwm_kib'] / 1024:.0f} | "
                     f"{large['vmhwm_kib'] / small['vmhwm_kib']:.2f} | {small['seconds']:.1f} | {large['seconds']:.1f} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows-per-table", type=int, default=500, help="task-table rows (the tables grow with N)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray worker node")
    parser.add_argument("--mix-max-samples", type=int, default=2000, help="samples per shard of the mixture")
    parser.add_argument("--shards-per-task", type=int, default=2, help="shards per write unit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="N")
    add_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-driver-rss-") as tmp:
        rows = compare(Path(tmp), args.samples, args)
    print(f"\nmix_and_write driver peak RSS (VmHWM), N = {args.samples}:\n" + table(rows, args.samples))


if __name__ == "__main__":
    main()
