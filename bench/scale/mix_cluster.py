"""Benchmark: the task stage, the mixer and the shard writer on a local Ray cluster, 1 against 2 worker nodes.

Inputs that need no download: ``tests/pipelines/pretrain_inputs.py`` writes a small copy of every
source of the shipped ``configs/pretrain.yaml`` in its published format; this benchmark keeps the
sources the task stage reads from local files (InternVL JSON Lines, Objects365's COCO JSON, the
WebDataset tars of ``common_crawl_pdf``: all four tasks), with ``translate_to`` removed (no
translation stage), and builds the config's mixture from them. No URL list, no download, no OCR.

Each run starts a cluster on this machine (``local_cluster.BenchCluster``: a ``ray start --head``
with no CPUs plus 1 or 2 ``ray start`` worker
nodes of one CPU each) and runs, in a driver process of its own that joins it by address, the
flow's own stage functions: ``build_tasks_stage`` (one Ray task per unit) and ``mix_stage``
(``mix_and_write``'s five passes, index, dedup, route, cut and write, one Ray task per unit,
then ``verify``). Every run writes to the same storage root path (emptied before it), so the
runs' outputs can be compared byte for byte. It reports:

- where the units ran: after each run the driver reads its job's task events (node id, state and
  function of every task attempt, what ``ray.util.state.list_tasks`` serves; see
  :func:`_job_tasks`) and counts, per pass, the finished tasks per node (head included). To tell
  the passes apart, the driver wraps the executor's ``run_tasks`` call so that each pass's Ray
  function has a name of its own (``unit_of_mix_write``); the work done is the same;
- seconds per pass (the time of each ``execute`` call, from the driver) and per stage;
- the sha256 of every file of the output directory: every tar and ``manifest.json`` must be the
  same in every run.

    .venv/bin/python bench/scale/mix_cluster.py [--per-source 100] [--samples 20000] [--repeats 1]

What it measures and what not: placement and determinism, and what a second one-CPU node costs
or gains on this machine. Both worker nodes share its cores with the head, the driver and other
jobs, so the 2-node time is no prediction of a real cluster's (no network, shared disk).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PRETRAIN = REPO / "configs" / "pretrain.yaml"
LOCAL_KINDS = ("internvl_jsonl", "coco", "webdataset")  # the sources read from local files
PASSES = ("tasks", "mix-index", "mix-dedup", "mix-route", "mix-cut", "mix-write")


def derived_config(path: Path) -> None:
    """``configs/pretrain.yaml`` with its local-format sources only, none translated."""
    import yaml

    raw = yaml.safe_load(PRETRAIN.read_text())
    sources = [dict(s) for s in raw["sources"] if s.get("kind") in LOCAL_KINDS]
    for source in sources:
        source.pop("translate_to", None)
    raw["sources"] = sources
    raw["translation"]["targets"] = []
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


# ---- the driver of one run (a process of its own, joined to the cluster) -------------------------


def measure(config_path: str, address: str, overrides: list[str]) -> dict:
    import ray

    import pipelines.stage
    import shards
    import shards.plan
    import shards.write
    from flows.assemble import build_tasks_stage, mix_stage, shard_directory
    from flows.config import load_config
    from pipelines.runtime import ensure_ray

    # The address is not in the config: the config (and so the manifest's config hash) is the same
    # whichever cluster runs it.
    config = load_config(config_path, overrides=overrides)
    ensure_ray(address)  # joining the cluster is not any stage's cost
    calls: list[dict] = []
    real_execute = pipelines.stage.execute

    def timed_execute(stage, ctx):
        start_ms, start = time.time() * 1000, time.perf_counter()
        report = real_execute(stage, ctx)
        calls.append({"pass": stage.name, "start_ms": start_ms, "end_ms": time.time() * 1000,
                      "seconds": time.perf_counter() - start, "units": report.units, "ran": report.units - report.skipped,
                      "samples": report.counters.samples})
        return report

    # The modules that call it: the task stage imports it when called, the mixer's at import.
    pipelines.stage.execute = shards.plan.execute = shards.write.execute = timed_execute
    real_run_tasks = pipelines.stage.run_tasks

    def named_run_tasks(function, calls, **options):  # the executor's own call, its Ray function named by pass
        shared = options.get("shared") or ()  # (stage, ctx), sent once; older executors put the stage in each call
        stage = shared[0] if shared else (calls[0][0] if calls else None)
        return real_run_tasks(_named(function, stage.name) if stage is not None else function, calls, **options)

    pipelines.stage.run_tasks = named_run_tasks
    seconds = {}

    def timed(name, function):  # mix_stage imports these from ``shards`` when called
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] = time.perf_counter() - start
        return call

    shards.mix_and_write = timed("mix_and_write", shards.mix_and_write)
    shards.verify = timed("verify", shards.verify)
    _warm_up(ray)
    start = time.perf_counter()
    tasks = build_tasks_stage(config)
    seconds["tasks stage"] = time.perf_counter() - start
    start = time.perf_counter()
    mix = mix_stage(config)
    seconds["mix stage"] = time.perf_counter() - start
    placed = _placement(ray, calls)
    out = Path(shard_directory(config))
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}
    return {"calls": calls, "seconds": seconds, "placement": placed,
            "task_samples": sum(s["samples"] for s in tasks.values()), "task_sources": len(tasks),
            "mix": {"samples": mix["samples"], "shards": mix["shards"]}, "digests": digests}


def _named(function, pass_name: str):
    """``function`` under a name of its own, so the task events say which pass a task belongs to."""

    def unit(*args):
        return function(*args)

    unit.__name__ = unit.__qualname__ = f"unit_of_{pass_name.replace('-', '_')}"
    return unit


def _warm(index: int) -> int:
    return index


def _warm_up(ray) -> None:
    """One task on each CPU of each worker node first, so no pass pays for starting Ray's workers."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    warm = ray.remote(num_cpus=1)(_warm)
    calls = [warm.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(i)
             for node in ray.nodes() if node["Alive"] for i in range(int(node["Resources"].get("CPU", 0)))]
    ray.get(calls)


def _placement(ray, calls: list[dict]) -> dict:
    """Per pass, this job's finished tasks per node label (``head``, ``worker-1``, ...)."""
    nodes = sorted(ray.nodes(), key=lambda n: (n["Resources"].get("CPU", 0) > 0, n["NodeManagerPort"]))
    labels, workers = {}, 0
    for node in nodes:
        if "node:__internal_head__" in node["Resources"]:
            labels[node["NodeID"]] = "head"
        else:
            workers += 1
            labels[node["NodeID"]] = f"worker-{workers}"
    expected = sum(call["ran"] for call in calls)
    deadline = time.monotonic() + 60
    while True:  # task events reach the GCS a second or so after the tasks end
        tasks = _job_tasks(ray)
        finished = [t for t in tasks if t["finished"]]
        if len(finished) >= expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    passes = {f"unit_of_{call['pass'].replace('-', '_')}": call["pass"] for call in calls}
    by_pass: dict[str, Counter] = {call["pass"]: Counter() for call in calls}
    unplaced = 0
    for task in finished:
        owner = passes.get(task["function"].rsplit(".", 1)[-1])
        if owner is None:
            unplaced += 1
            continue
        by_pass[owner][labels.get(task["node_id"], task["node_id"])] += 1
    return {"labels": sorted(set(labels.values())), "by_pass": {p: dict(c) for p, c in by_pass.items()},
            "finished": len(finished), "expected": expected, "unplaced": unplaced,
            "failed_attempts": sum(1 for t in tasks if t["failed"]),
            "functions": sorted({t["function"] for t in finished})}


def _job_tasks(ray) -> list[dict]:
    """This job's normal (non-actor) task attempts: node, creation time, finished or failed.

    Ray's state API (``ray.util.state.list_tasks``) serves these task events through the head's
    dashboard, which needs ``ray[default]``; vlmix installs ``ray[data,train]`` (no ``aiohttp_cors``,
    so no dashboard), so they are read where the state API gets them: the GCS's task event store.
    """
    from ray._private.state import state
    from ray.core.generated import common_pb2

    job = ray.get_runtime_context().get_job_id()
    finished_code = common_pb2.TaskStatus.Value("FINISHED")
    failed_code = common_pb2.TaskStatus.Value("FAILED")
    tasks = []
    for event in state._get_all_task_events():
        if (event.job_id.hex() != job or event.task_info.type != common_pb2.NORMAL_TASK
                or event.task_info.func_or_class_name.endswith("_warm")):
            continue
        stamps = event.state_updates.state_ts_ns
        tasks.append({"node_id": event.state_updates.node_id.hex(), "function": event.task_info.func_or_class_name,
                      "finished": finished_code in stamps, "failed": failed_code in stamps})
    return tasks


# ---- the benchmark -------------------------------------------------------------------------------


def run_on_cluster(tmp: Path, config: Path, data_dir: Path, workers: int, index: int, args) -> dict:
    sys.path.insert(0, str(HERE))
    from local_cluster import BenchCluster, run_driver

    root = tmp / "root"  # the same path every run: identical paths, identical bytes expected
    shutil.rmtree(root, ignore_errors=True)
    overrides = [f"paths.data={data_dir}", f"storage.root={root}", "ray.address=null",
                 f"mixture.total_samples={args.samples}", f"shards.max_samples={args.max_samples}",
                 f"shards.shards_per_task={args.shards_per_task}"]
    cluster = BenchCluster(Path("/tmp") / f"vlmix-mixc-{os.getpid()}-{index}-{workers}")  # short: socket paths
    try:
        return run_driver(cluster, lambda: cluster.start_nodes(workers=workers, cpus=1),
                          [__file__, "--measure", str(config), "--address", cluster.address], overrides,
                          workers=workers, timeout=3600)
    finally:
        cluster.stop()


def pass_seconds(result: dict, name: str) -> float:
    return sum(c["seconds"] for c in result["calls"] if c["pass"] == name)


def report(results: dict[int, list[dict]], args) -> None:
    first = results[1][0]
    print(f"\n{first['task_sources']} task-stage sources, {first['task_samples']} task samples; mixture of "
          f"{first['mix']['samples']} samples in {first['mix']['shards']} shards "
          f"(max_samples {args.max_samples}, {args.shards_per_task} shards per write unit)")
    print("\nWhere the units ran (finished Ray tasks per node, from the job's task events; first run of each size):")
    print("| pass | units | 1 node: head, worker-1 | 2 nodes: head, worker-1, worker-2 |")
    print("| --- | --- | --- | --- |")
    for name in PASSES:
        cells = []
        for workers in (1, 2):
            placed = results[workers][0]["placement"]["by_pass"].get(name, {})
            labels = ["head"] + [f"worker-{i + 1}" for i in range(workers)]
            cells.append(", ".join(str(placed.get(label, 0)) for label in labels))
        units = sum(c["ran"] for c in first["calls"] if c["pass"] == name)
        print(f"| {name} | {units} | {cells[0]} | {cells[1]} |")
    for workers, runs in results.items():
        for run in runs:
            placed = run["placement"]
            if placed["finished"] != placed["expected"] or placed["unplaced"] or placed["failed_attempts"]:
                print(f"  {workers} node(s): {placed['finished']} finished tasks listed of {placed['expected']} units "
                      f"run, {placed['unplaced']} outside any pass, {placed['failed_attempts']} failed attempts")
    print("\nSeconds (median of the runs of each size):")
    print("| pass or stage | 1 node (s) | 2 nodes (s) | speed-up |")
    print("| --- | --- | --- | --- |")
    rows = [(name, lambda r, n=name: pass_seconds(r, n)) for name in PASSES]
    rows.append(("mix_and_write outside the passes (listing, plan arithmetic, manifest, report)",
                 lambda r: r["seconds"]["mix_and_write"] - sum(pass_seconds(r, n) for n in PASSES[1:])))
    rows.append(("mix stage: of it, verify", lambda r: r["seconds"]["verify"]))
    rows += [(stage, lambda r, s=stage: r["seconds"][s]) for stage in ("tasks stage", "mix stage")]
    rows.append(("total", lambda r: r["seconds"]["tasks stage"] + r["seconds"]["mix stage"]))
    for name, value in rows:
        one, two = (statistics.median(value(r) for r in results[w]) for w in (1, 2))
        print(f"| {name} | {one:.2f} | {two:.2f} | {one / two:.2f} |")
    runs = [r for w in (1, 2) for r in results[w]]
    reference = runs[0]["digests"]
    checked = [n for n in reference if n.endswith(".tar") or n == "manifest.json"]
    same = all({n: r["digests"].get(n) for n in checked} == {n: reference[n] for n in checked}
               and sorted(n for n in r["digests"] if n.endswith(".tar")) == sorted(n for n in checked if n != "manifest.json")
               for r in runs)
    others = sorted(set(reference) - set(checked))
    others_same = {n: all(r["digests"].get(n) == reference[n] for r in runs) for n in others}
    print(f"\nOutput bytes: {len(checked) - 1} tars + manifest.json identical (sha256) in all {len(runs)} runs: {same}"
          + (f"; other files identical: {others_same}" if others else ""))
    print("manifest.json sha256 " + reference.get("manifest.json", "missing"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-source", type=int, default=100, help="records per source of the inputs")
    parser.add_argument("--samples", type=int, default=20_000, help="samples in the mixture")
    parser.add_argument("--max-samples", type=int, default=1000, help="samples per shard")
    parser.add_argument("--shards-per-task", type=int, default=2, help="shards per write unit")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cluster size, alternated")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the driver of one run
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.address, args.overrides)))
        return

    sys.path.insert(0, str(REPO / "tests" / "pipelines"))
    from pretrain_inputs import make_pretrain_inputs

    sys.path.insert(0, str(HERE))
    from local_cluster import removed

    tmp = Path(tempfile.mkdtemp(prefix="vlmix-bench-mixc-"))
    results: dict[int, list[dict]] = {1: [], 2: []}
    with removed(tmp):
        start = time.perf_counter()
        with make_pretrain_inputs(tmp / "data", per_source=args.per_source, seed=0) as inputs:
            data_dir = inputs.data_dir  # its HTTP server (for the URL lists) is not used
        print(f"inputs written in {time.perf_counter() - start:.0f} s", flush=True)
        config = tmp / "pretrain-local.yaml"
        derived_config(config)
        for repeat in range(args.repeats):
            for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                result = run_on_cluster(tmp, config, data_dir, workers, repeat, args)
                results[workers].append(result)
                print(f"run {repeat}, {workers} worker node(s) (cluster up in {result['start_s']:.0f} s): "
                      + "  ".join(f"{n} {pass_seconds(result, n):.2f}s" for n in PASSES)
                      + f"; {', '.join(f'{k} {v:.1f}s' for k, v in result['seconds'].items())}"
                      + f"; load {result['load']:.1f}", flush=True)
        report(results, args)


if __name__ == "__main__":
    main()
