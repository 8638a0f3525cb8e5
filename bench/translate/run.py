"""Benchmark: the vlmix translation stage against the same prompts sent straight to the same vLLM server.

1. Throughput. The same N distinct captions, the same Figure-5 messages, max_tokens, temperature and
   concurrency, against one server: (a) a bare aiohttp loop with a semaphore, (b) the stage
   (``Translator``: input Parquet parts in, validation, output Parquet parts out; cache off, so it
   sends every request too). Runs alternate (direct, stage, direct, ...); the server runs without
   prefix caching so no run profits from an earlier one. Reports requests/s per run, the medians and
   their ratio stage/direct (target >= 0.95).
2. Work saved. A caption set with a web-like duplicate rate (Zipf-distributed repeats, ~25% of rows
   repeat an earlier caption), translated with the cache on; then a second source sharing half its
   captions. Reports rows, requests sent, and the calls saved by deduplication and by the cache.

    .venv/bin/python bench/translate/run.py [--requests 400] [--concurrency 16] [--repeats 3]
    .venv/bin/python bench/translate/run.py --endpoint http://gpu:8000/v1 --model NAME   # a real server

Without ``--endpoint`` it builds the tests' tiny random Qwen2 and serves it with vLLM on CPU from
./.venv-vllm (scripts/setup_vllm.sh); those numbers measure the client side against a fast server.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from pipelines.languages import Language
from pipelines.storage import Storage
from translate.client import ChatClient
from translate.launch import VllmProcess
from translate.prompt import build_messages
from translate.settings import TranslateSettings, VllmServers
from translate.translator import Translator

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = [
    "a dog",
    "two cats",
    "a red bus",
    "an old man",
    "a small boat",
    "three birds",
    "a bicycle",
    "a woman",
    "a plate of food",
    "a wooden chair",
    "a child",
    "a white horse",
    "a city street",
    "a mountain lake",
]
ACTIONS = ["standing", "sleeping", "parked", "running", "sitting", "waiting", "shown", "seen from above"]
PLACES = [
    "on the beach",
    "in the park",
    "near a tall building",
    "under a tree",
    "at night",
    "in the snow",
    "by the river",
    "in a kitchen",
    "on a table",
    "in the rain",
]
LANGUAGES = {"zh": Language(name="Chinese", scripts=["Han"])}


def caption(i: int) -> str:
    return f"{SUBJECTS[i % 14].capitalize()} {ACTIONS[(i // 14) % 8]} {PLACES[(i // 112) % 10]}, photo {i // 1120}."


def web_captions(rows: int, seed: int, repeat_share: float = 0.25, pool_offset: int = 0) -> list[str]:
    """Captions where ``repeat_share`` of the rows repeat an earlier one, popular ones more often.

    About a quarter of web alt-texts repeat ("Stock photo", "Image may contain...", product names);
    repeats follow a heavy tail, so a few captions account for most of them.
    """
    rng = random.Random(seed)
    out: list[str] = []
    for index in range(rows):
        if out and rng.random() < repeat_share:
            rank = min(int(rng.paretovariate(1.2)) - 1, len(out) - 1)  # 0 = the most popular caption
            out.append(out[rank])
        else:
            out.append(caption(pool_offset + index))
    return out


def write_parts(storage: Storage, source: str, texts: list[str], parts: int) -> list[str]:
    paths = []
    size = -(-len(texts) // parts)
    for index in range(parts):
        chunk = texts[index * size : (index + 1) * size]
        table = pa.table(
            {
                "key": [f"{index}-{i}" for i in range(len(chunk))],
                "field": ["caption"] * len(chunk),
                "text": chunk,
            }
        )
        path = storage.path("input", source, f"part-{index:05d}.parquet")
        storage.write_parquet(path, table)
        paths.append(path)
    return paths


async def direct(
    url: str, model: str, texts: list[str], concurrency: int, settings: TranslateSettings
) -> float:
    """Requests/s of a bare aiohttp loop: the floor any client pays."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(text: str) -> None:
            payload = {
                "model": model,
                "messages": build_messages(text, "Chinese"),
                "temperature": 0.0,
                "max_tokens": settings.max_tokens(text),
            }
            async with gate, session.post(f"{url}/chat/completions", json=payload) as response:
                response.raise_for_status()
                await response.json()

        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        return len(texts) / (time.perf_counter() - started)


async def stage(url, model, storage, parts, concurrency, settings, run: int) -> tuple[float, int]:
    async with ChatClient([url], model=model, concurrency=concurrency) as client:
        translator = Translator(storage, client, LANGUAGES, settings)
        started = time.perf_counter()
        reports = await translator.translate_source(f"bench{run}", parts, ["zh"])
        elapsed = time.perf_counter() - started
    return reports["zh"].stats.requests / elapsed, reports["zh"].stats.requests


async def savings(url, model, storage, concurrency, settings, rows: int) -> dict:
    first = web_captions(rows, seed=1)
    second = first[: rows // 2] + web_captions(rows - rows // 2, seed=2, pool_offset=rows)
    result = {"rows_per_source": rows, "duplicate_rows_first_source": rows - len(set(first))}
    for name, texts in (("coyo", first), ("grit", second)):  # two runs: the second one meets the cache
        async with ChatClient([url], model=model, concurrency=concurrency) as client:
            translator = Translator(storage, client, LANGUAGES, settings)
            report = (await translator.translate_source(name, write_parts(storage, name, texts, 4), ["zh"]))[
                "zh"
            ]
            s = report.stats
            result[name] = {
                "rows": s.rows,
                "requests": s.requests,
                "saved_by_dedup": s.deduplicated,
                "saved_by_cache": s.from_cache,
                "saved_share": round(1 - s.requests / s.rows, 3),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000, help="rows of the caption set of part 2")
    parser.add_argument("--endpoint", help="an OpenAI-compatible base URL; default: start vLLM here")
    parser.add_argument("--model", help="model name at --endpoint")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vlmix-bench-translate-"))
    storage = Storage(str(work / "root"))
    settings = TranslateSettings(min_max_tokens=8, max_max_tokens=16, cache=False, parts_in_flight=2)
    server = None
    if args.endpoint:
        url, model = args.endpoint.rstrip("/"), args.model
    else:
        spec = importlib.util.spec_from_file_location("tiny", REPO / "tests" / "translate" / "conftest.py")
        tiny = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tiny)
        model = str(tiny.build_tiny_model(work / "model"))
        vllm = VllmServers(
            python=str(REPO / ".venv-vllm" / "bin" / "python"),
            device="cpu",
            dtype="float32",
            max_model_len=1024,
            extra_args=["--no-enable-prefix-caching"],
            env={"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"},
        )
        server = VllmProcess(model, vllm)
        server.start()
        url = server.wait_healthy()
    try:
        texts = [caption(i) for i in range(args.requests)]
        asyncio.run(direct(url, model, texts[:32], args.concurrency, settings))  # warm-up
        results: dict[str, list[float]] = {"direct": [], "stage": []}
        for run in range(args.repeats):
            results["direct"].append(asyncio.run(direct(url, model, texts, args.concurrency, settings)))
            parts = write_parts(storage, f"bench{run}", texts, 4)
            rate, sent = asyncio.run(stage(url, model, storage, parts, args.concurrency, settings, run))
            assert sent == len(texts)
            results["stage"].append(rate)
            print(f"run {run}: direct {results['direct'][-1]:.1f} req/s, stage {rate:.1f} req/s", flush=True)
        medians = {name: statistics.median(values) for name, values in results.items()}
        cached = settings.model_copy(update={"cache": True})
        saved = asyncio.run(savings(url, model, storage, args.concurrency, cached, args.rows))
    finally:
        if server is not None:
            server.stop()
    print(
        json.dumps(
            {
                "requests": args.requests,
                "concurrency": args.concurrency,
                "runs": results,
                "median_requests_per_s": medians,
                "ratio_stage_over_direct": round(medians["stage"] / medians["direct"], 3),
                "work_saved": saved,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
