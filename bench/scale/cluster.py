"""Benchmark: the demo mixture built on a local Ray cluster with 1 against 2 worker nodes.

Each run starts a real cluster on this machine (``tests/scale/test_cluster.py``'s ``LocalCluster``:
a ``ray start --head`` with no CPUs plus N ``ray start`` worker nodes of one CPU each), then runs
the demo's stages through ``ray.address`` in a driver process of its own, as ``vlmix run`` would:
download (img2dataset tasks), OCR (one actor per worker CPU), task samples and the mix (both in
the driver). It reports each stage's seconds and throughput, and how the download shards and
OCR images spread over the nodes. Runs alternate (1 node, 2 nodes, 2 nodes, 1 node, ...) so
background load hits both alike; the table gives medians.

    .venv/bin/python bench/scale/cluster.py [--scale 0.1] [--repeats 1] [--samples 2000]

What it measures: whether the stages spread their work over the cluster's nodes and what that
costs or gains on one 2-core machine. Both worker nodes share those 2 cores with the head, the
driver, the demo's HTTP server and whatever else runs, so "2 nodes" can at best use both cores
where "1 node" is limited to one CPU slot; a speed-up near 2 is the ceiling, not a prediction.
It does not predict a real cluster's scaling: no network between nodes (the object store
transfers are local shared memory), no real bandwidth or latency to the image hosts, and no
per-node disks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STAGES = ("download", "ocr", "tasks", "mix")
UNITS = {"download": "images", "ocr": "images", "tasks": "samples", "mix": "samples"}


def measure(config_path: str, overrides: list[str]) -> dict:
    """Run the stages against the cluster named in ``overrides``; seconds, counts and nodes per stage."""
    from flows.assemble import build_tasks_stage, download_all, mix_stage, ocr_stage
    from flows.config import load_config
    from pipelines.runtime import ensure_ray
    from pipelines.storage import Storage

    config = load_config(config_path, overrides=overrides)
    ensure_ray(config.ray.address)  # joining the cluster is not any stage's cost
    storage = Storage(config.storage.root)
    result: dict = {"seconds": {}, "count": {}, "nodes": {}}

    def timed(stage, step):
        start = time.perf_counter()
        made = step()
        result["seconds"][stage] = time.perf_counter() - start
        return made

    downloads = timed("download", lambda: download_all(config, progress=False))
    result["count"]["download"] = sum(s.downloaded for s in downloads.values())
    result["nodes"]["download"] = _sum_counts(s.nodes for s in downloads.values())  # shards per node
    timed("ocr", lambda: ocr_stage(config))
    ocr_stats = [storage.read_json(p) for p in storage.glob(storage.path("ocr", "*", "stats.json"))]
    result["count"]["ocr"] = sum(s["images"] for s in ocr_stats)
    result["nodes"]["ocr"] = _sum_counts(s["nodes"] for s in ocr_stats)  # images per node
    tasks = timed("tasks", lambda: build_tasks_stage(config))
    result["count"]["tasks"] = sum(s["samples"] for s in tasks.values())
    mix = timed("mix", lambda: mix_stage(config))
    result["count"]["mix"] = mix["samples"]
    return result


def _sum_counts(parts) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


def run_on_cluster(tmp: Path, workers: int, config_template: str, demo: Path, args, index: int) -> dict:
    """Start a cluster of ``workers`` CPU nodes, build the mixture on it, stop it."""
    sys.path.insert(0, str(HERE))
    from local_cluster import LocalCluster, run_driver

    root = tmp / f"run-{index}-{workers}"
    config = tmp / f"config-{index}-{workers}.yaml"
    config.write_text(config_template.format(root=root, demo=demo, scale=args.scale, samples=args.samples))
    cluster = LocalCluster(Path("/tmp") / f"vlmix-bench-{os.getpid()}-{index}")  # short: socket paths
    overrides = [
        f"ray.address={cluster.address}",
        f"ocr.concurrency={workers}",  # one single-threaded OCR actor per worker CPU
        f"download.samples_per_shard={args.samples_per_shard}",
    ]
    try:
        result = run_driver(
            cluster,
            lambda: cluster.start(cpu_workers=workers, gpu_workers=0),
            [__file__, "--measure", str(config)],
            overrides,
            workers=workers,
            timeout=1800,
        )
        workers_ids = cluster.worker_ids()
        by_stage = result.pop("nodes")
        result["nodes"] = {
            stage: sorted(by_node.values(), reverse=True) for stage, by_node in by_stage.items()
        }
        result["foreign_nodes"] = {
            stage: sorted(set(by_node) - workers_ids) for stage, by_node in by_stage.items()
        }
        return result
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="demo scale (1.0: ~3,100 URLs)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cluster size, alternated")
    parser.add_argument("--samples", type=int, default=2000, help="samples in the mixture")
    parser.add_argument(
        "--samples-per-shard", type=int, default=16, help="download shard size (shards spread)"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the driver of one run
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.overrides)))
        return

    sys.path.insert(0, str(HERE))
    from local_cluster import removed
    from object_storage import CONFIG  # the same demo mixture as the storage benchmark

    from flows.demo import DemoServer, generate, write_url_lists

    tmp = Path(tempfile.mkdtemp(prefix="vlmix-bench-cluster-"))
    demo = generate(tmp / "demo", seed=7, scale=args.scale, bad_url_share=0.06)
    results: dict[int, list[dict]] = {1: [], 2: []}
    with DemoServer(demo, hang_s=5, oversized_mib=4) as server, removed(tmp):
        write_url_lists(demo, server.base_url)
        for repeat in range(args.repeats):
            for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                result = run_on_cluster(tmp, workers, CONFIG, demo, args, repeat)
                results[workers].append(result)
                print(
                    f"run {repeat}, {workers} worker node(s) (cluster up in {result['start_s']:.0f} s): "
                    + "  ".join(f"{s} {result['seconds'][s]:.2f}s" for s in STAGES)
                    + f"; download shards per node {result['nodes'].get('download')}, "
                    f"OCR images per node {result['nodes'].get('ocr')}; load {result['load']:.1f}",
                    flush=True,
                )
                foreign = {s: ids for s, ids in result["foreign_nodes"].items() if ids}
                if foreign:
                    print(f"  work on nodes that are not this cluster's workers: {foreign}")

    counts = results[1][0]["count"]
    print(
        f"\ndemo scale {args.scale}: {counts['download']} images downloaded, {counts['ocr']} images OCRed, "
        f"{counts['tasks']} task samples, {counts['mix']} samples in the mixture "
        f"(same counts on 2 nodes: {all(r['count'] == counts for rs in results.values() for r in rs)})"
    )
    print("\n| stage | 1 node (s) | 1 node (/s) | 2 nodes (s) | 2 nodes (/s) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for stage in (*STAGES, "total"):
        seconds = {}
        for workers, runs in results.items():
            per_run = [sum(r["seconds"].values()) if stage == "total" else r["seconds"][stage] for r in runs]
            seconds[workers] = statistics.median(per_run)
        if stage == "total":
            rate = {w: "" for w in seconds}
        else:
            rate = {w: f"{counts[stage] / seconds[w]:.1f} {UNITS[stage]}" for w in seconds}
        print(
            f"| {stage} | {seconds[1]:.2f} | {rate[1]} | {seconds[2]:.2f} | {rate[2]} | "
            f"{seconds[1] / seconds[2]:.2f} |"
        )


if __name__ == "__main__":
    main()
