"""Translation requests sent from Ray workers: requests/s of ``run_translation``, 1 and 2 workers.

Against a loopback OpenAI-compatible server of this benchmark's own (aiohttp, in a child process) that
answers every chat completion at once with the same Chinese sentence, so every row passes validation
and the numbers are the client side's own ceiling: reading the input parts, building prompts, sending
the requests, validating and writing the output parts. Many distinct English captions in 16 input
parts, cache off, so every text is one request. One run of this script measures, at the same total
concurrency against the one endpoint:

- ``in-process``: ``run_translation`` called in a process where Ray is not initialised, so the stage's
  asyncio client runs in that calling process (today's path, the baseline);
- ``ray, 1 worker`` and ``ray, 2 workers``: the driver has a local Ray (``ensure_ray(None,
  num_cpus=2)``) and the requests go out from ``TranslateSettings.workers`` Ray tasks, each over its
  share of the parts.

The baseline runs in a second process of its own (never touching Ray), so the three setups alternate
in rounds, each first in turn, all under the same background (an idle Ray is up throughout). An
untimed small run warms each path first (on Ray: it starts the worker processes). Each run gets a
fresh storage root and is checked: every row translated, every part written, every request seen by
the server. Reports requests/s per run, the medians, the ratios against the baseline (of the medians,
and the median of each round's own ratio, steadier when other load comes and goes during the run),
and the CPU seconds per run of the calling process and of the server (where the work ran). On a
2-core machine the workers share the cores with the server and whatever else runs: this shows the
client's own ceiling and where the work lands, not what a cluster of many nodes would do.

    .venv/bin/python bench/translate/workers.py [--texts 20000] [--parts 16] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow as pa

from flows.config import validate_config
from flows.translation import run_translation
from pipelines.runtime import ensure_ray, shutdown_ray
from pipelines.storage import Storage
from translate.settings import TranslateSettings

ANSWER = "一只狗在海滩上"  # "a dog on the beach": all Han, short, so validation accepts it for any caption
MODEL = "bench-echo"
SOURCE = "coyo"


SUBJECTS = ["a dog", "two cats", "a red bus", "an old man", "a small boat", "three birds", "a child"]
PLACES = ["on the beach", "in the park", "under a tree", "at night", "in the snow", "by the river"]


def captions(count: int) -> list[str]:
    """``count`` distinct short English captions."""
    return [f"{SUBJECTS[i % 7].capitalize()} {PLACES[(i // 7) % 6]}, photo {i // 42}." for i in range(count)]


def write_inputs(storage: Storage, texts: list[str], parts: int) -> None:
    """Long-format input parts (key, field, text) where the stage finds them: translate/<source>/_input/."""
    size = -(-len(texts) // parts)
    for index in range(parts):
        chunk = texts[index * size : (index + 1) * size]
        table = pa.table(
            {
                "key": [f"{index}-{row}" for row in range(len(chunk))],
                "field": ["caption"] * len(chunk),
                "text": chunk,
            }
        )
        storage.write_parquet(storage.path("translate", SOURCE, "_input", f"part-{index:05d}.parquet"), table)


def serve(conn) -> None:
    """The loopback server (child process): /v1/models, /v1/chat/completions, and /stats (requests seen)."""
    import asyncio

    from aiohttp import web

    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48},
        },
        ensure_ascii=False,
    ).encode()
    seen = {"chat": 0}

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        seen["chat"] += 1
        return web.Response(body=body, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**seen, "cpu_s": time.process_time()})

    async def main() -> None:
        app = web.Application()
        app.add_routes(
            [web.post("/v1/chat/completions", chat), web.get("/v1/models", models), web.get("/stats", stats)]
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def served(base: str) -> tuple[int, float]:
    """Chat completions the server answered so far, and its CPU seconds."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    with opener.open(f"{base}/stats", timeout=10) as response:
        seen = json.loads(response.read())
    return seen["chat"], seen["cpu_s"]


def make_config(root: Path, url: str, concurrency: int):
    return validate_config(
        {
            "storage": {"root": str(root)},
            "tasks": {"captioning": {"share": 1.0}},
            "languages": {"zh": {"name": "Chinese", "scripts": ["Han"]}},
            "translation": {"endpoints": [url], "model": MODEL, "concurrency": concurrency},
            "sources": [
                {
                    "name": SOURCE,
                    "kind": "url_list",
                    "task": "captioning",
                    "language": "en",
                    "locations": ["unused.parquet"],
                    "translate_to": ["zh"],
                }
            ],
        }
    )


class Runner:
    def __init__(self, work: Path, base: str, texts: list[str], parts: int, concurrency: int):
        self.work, self.base, self.texts, self.parts, self.concurrency = work, base, texts, parts, concurrency
        self.count = 0

    def once(self, workers: int, texts: list[str] | None = None) -> tuple[float, float, float]:
        """One run on a fresh storage root: requests/s, driver and server CPU seconds; checks the outcome."""
        texts = texts or self.texts
        self.count += 1
        root = self.work / f"run-{self.count:02d}"
        storage = Storage(str(root))
        write_inputs(storage, texts, self.parts)
        config = make_config(root, f"{self.base}/v1", self.concurrency)
        settings = TranslateSettings(cache=False, workers=workers, min_max_tokens=8, max_max_tokens=16)
        before, server_cpu = served(self.base)
        cpu, started = time.process_time(), time.perf_counter()
        reports = run_translation(config, settings)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        report = reports[SOURCE]["zh"]
        after, server_cpu_after = served(self.base)
        sent = after - before
        problems = {
            "failed": report.failed,
            "parts_written": report.parts_written,
            "rows": report.stats.rows,
            "translated": report.stats.translated,
            "requests": report.stats.requests,
            "server_saw": sent,
        }
        expected = {"failed": {}, "parts_written": self.parts, **{k: len(texts) for k in
                    ("rows", "translated", "requests", "server_saw")}}
        if problems != expected:
            raise AssertionError(f"run {self.count} (workers={workers}): got {problems}, expected {expected}")
        return len(texts) / elapsed, cpu, server_cpu_after - server_cpu


SETUPS = {"in-process": 0, "ray, 1 worker": 1, "ray, 2 workers": 2}  # name -> Ray workers (0: no Ray)
_baseline: Runner | None = None


def _start_baseline(work: Path, base: str, texts: list[str], parts: int, concurrency: int) -> None:
    global _baseline
    _baseline = Runner(work / "in-process", base, texts, parts, concurrency)


def _baseline_once(texts: int | None = None) -> tuple[float, float, float]:
    return _baseline.once(1, _baseline.texts[:texts] if texts else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20000, help="distinct captions, one request each")
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64, help="translation.concurrency (total)")
    parser.add_argument("--repeats", type=int, default=4, help="timed runs of each setup")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(send,), daemon=True)
    server.start()
    if not receive.poll(60):
        raise RuntimeError("the loopback server did not start within 60 s")
    base = f"http://127.0.0.1:{receive.recv()}"
    work = Path(tempfile.mkdtemp(prefix="vlmix-bench-workers-"))
    texts = captions(args.texts)
    assert len(set(texts)) == len(texts)
    bench = Runner(work, base, texts, args.parts, args.concurrency)
    runs: dict[str, list[float]] = {name: [] for name in SETUPS}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in SETUPS}  # (caller, server) CPU s
    # The baseline calls run_translation in a process of its own where Ray is never initialised, so
    # that it can alternate with the Ray runs without a Ray restart between them.
    baseline = ctx.Pool(1, initializer=_start_baseline, initargs=(work, base, texts, args.parts, args.concurrency))
    try:
        warm = args.parts * 20
        baseline.apply(_baseline_once, (warm,))  # untimed: first-call costs of that process
        started = time.perf_counter()
        ensure_ray(None, num_cpus=2)
        bench.once(2, texts[:warm])  # untimed: starts both worker processes
        print(f"Ray start and first call: {time.perf_counter() - started:.1f} s", flush=True)
        for round_ in range(args.repeats):
            names = list(SETUPS)
            for name in names[round_ % 3 :] + names[: round_ % 3]:  # each setup first in turn
                workers = SETUPS[name]
                if workers:
                    rate, caller, server_cpu = bench.once(workers)
                else:
                    rate, caller, server_cpu = baseline.apply(_baseline_once)
                runs[name].append(rate)
                cpu[name].append((caller, server_cpu))
                print(f"{name:15s} {rate:8.1f} requests/s, CPU s: caller {caller:5.1f}, "
                      f"server {server_cpu:5.1f}", flush=True)
    finally:
        baseline.terminate()
        shutdown_ray()
        server.terminate()
        server.join(10)

    medians = {name: statistics.median(values) for name, values in runs.items()}
    reference = medians["in-process"]
    print(f"\n{args.texts} distinct texts in {args.parts} parts, concurrency {args.concurrency}, cache off\n")
    print("| setup | requests/s (median) | runs | ratio of medians | ratio within a round (median) "
          "| CPU s per run: caller, server |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, value in medians.items():
        per_run = ", ".join(f"{v:.0f}" for v in runs[name])
        within = statistics.median(a / b for a, b in zip(runs[name], runs["in-process"], strict=True))
        caller = statistics.median(c[0] for c in cpu[name])
        server_cpu = statistics.median(c[1] for c in cpu[name])
        print(f"| {name} | {value:.0f} | {per_run} | {value / reference:.2f} | {within:.2f} "
              f"| {caller:.1f}, {server_cpu:.1f} |")


if __name__ == "__main__":
    main()
