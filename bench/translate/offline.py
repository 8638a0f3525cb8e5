"""Benchmark: the translation stage over vLLM's HTTP server against vLLM's offline engine, same prompts.

Generated tokens/s of the same model on the same N distinct captions, each one's Figure-5 chat
messages and token budget built by the stage's own code (``translate.prompt.build_messages``,
``TranslateSettings.max_tokens``), greedy, four ways:

- ``offline``: ``vllm.LLM(...).chat(conversations, sampling_params)``, all prompts in one call, in a
  child process of the vLLM interpreter (./.venv-vllm; the main environment has no vLLM); tokens:
  ``len(outputs[0].token_ids)`` summed;
- ``stage``: ``flows.translation.run_translation`` end to end (input Parquet parts in, requests,
  validation, output parts out; in this process, no Ray, cache off) against a vLLM OpenAI-compatible
  server started by ``translate.launch.VllmProcess`` (vlmix's own command and environment);
- ``http``: the same requests from ``bench/translate/run.py``'s bare aiohttp loop, same server and
  concurrency: what the HTTP hop costs without the stage;
- ``engine``: the stage on vlmix's own offline engine (``translation.stage.vllm.engine: offline``):
  ``translate.stage.TranslationActors.run_unit`` for each input part in turn, as one actor of the
  pool does, with one ``translate.engine.OfflineEngine`` (started once, like an actor's); tokens: the
  replies' completion tokens (``tokens`` tally).

Server tokens: its ``vllm:generation_tokens_total`` counter (/metrics) over the run, the sum of the
responses' ``usage.completion_tokens`` (checked on direct requests in the warm-up). The engines get
the same model, dtype, context, eager mode, KV cache, batch limits (``max_num_seqs`` and
``max_num_batched_tokens``, whose defaults differ between ``LLM`` and the server) and no prefix
caching (each round does the same work). All stay up throughout; after an untimed warm-up the paths
alternate in rounds, each first in turn. Every round is checked: one output row per caption, the
same token counts, the stage's raw outputs compared with the offline texts. Valid rows: the stage's
count; the offline texts go through the same ``Validator`` (the tests' tiny random model writes
Latin noise, so no row passes for Chinese). CPU seconds per round: the calling process, the
frontend (server's API process / the ``LLM`` process) and the engine core processes below it.

    .venv/bin/python bench/translate/offline.py [--prompts 400] [--rounds 5] [--concurrency 256]
    .venv/bin/python bench/translate/offline.py --model /models/qwen2-7b-instruct --device cuda \\
        --dtype bfloat16 --vllm-python /opt/vllm/bin/python --prompts 5000 --gpu-memory-utilization 0.2

The vLLM interpreter runs this file too (``--engine-worker``): its top level imports only the stdlib.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE, TARGET = "coyo", "zh"
LANGUAGES = {TARGET: {"name": "Chinese", "scripts": ["Han"]}}
ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
PATHS = ("offline", "stage", "http", "engine")


def engine_worker(spec: dict, reply_fd: int) -> None:
    """(vLLM interpreter) Load the model once, then run the prompts through ``LLM.chat`` per command."""
    from vllm import LLM, SamplingParams

    replies = os.fdopen(reply_fd, "w", buffering=1)
    started = time.perf_counter()
    llm = LLM(model=spec["model"], **spec["engine"])
    prompts = [json.loads(line) for line in open(spec["prompts"], encoding="utf-8")]
    params = [SamplingParams(temperature=0.0, max_tokens=p["max_tokens"]) for p in prompts]
    replies.write(json.dumps({"load_s": time.perf_counter() - started}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        count = command.get("limit") or len(prompts)
        started = time.perf_counter()
        outputs = llm.chat([p["messages"] for p in prompts[:count]], params[:count], use_tqdm=False)
        wall = time.perf_counter() - started
        texts = {
            p["key"]: [o.outputs[0].text, o.outputs[0].finish_reason]
            for p, o in zip(prompts[:count], outputs, strict=True)
        }
        Path(command["out"]).write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        generated = sum(len(o.outputs[0].token_ids) for o in outputs)
        prompt = sum(len(o.prompt_token_ids) for o in outputs)
        replies.write(json.dumps({"wall_s": wall, "generated": generated, "prompt": prompt}) + "\n")


def cpu_s(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) of process ``root`` itself and of its live descendants (/proc)."""
    parents, ticks = {}, {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry)], ticks[int(entry)] = int(fields[1]), int(fields[11]) + int(fields[12])
    below, frontier = set(), [root]
    while frontier:
        children = [c for c, p in parents.items() if p == frontier[-1] and c not in below]
        frontier.pop()
        below.update(children)
        frontier += children
    hz = os.sysconf("SC_CLK_TCK")
    return ticks.get(root, 0) / hz, sum(ticks.get(pid, 0) for pid in below) / hz


def counters(base: str) -> dict[str, float]:
    """The server's generated and prompt token counters (Prometheus text at <base>/metrics)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    names = {"generated": "vllm:generation_tokens_total", "prompt": "vllm:prompt_tokens_total"}
    return {
        key: sum(
            float(line.rsplit(" ", 1)[1]) for line in lines if line.split("{")[0].split(" ")[0] == metric
        )
        for key, metric in names.items()
    }


class OfflineEngine:
    """The ``--engine-worker`` child: commands on its stdin, one JSON reply per line on a pipe."""

    def __init__(self, python: str, spec: dict, env: dict, log_path: Path):
        read, write = os.pipe()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [python, __file__, "--engine-worker", json.dumps(spec), str(write)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env,
                pass_fds=(write,), text=True, start_new_session=True,
            )  # fmt: skip
        os.close(write)
        self.replies, self.log_path = os.fdopen(read), log_path

    def reply(self) -> dict:
        line = self.replies.readline()
        if not line:
            tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"the offline engine exited; {self.log_path} ends:\n" + "\n".join(tail))
        return json.loads(line)

    def run(self, out: Path, limit: int | None = None) -> dict:
        self.process.stdin.write(json.dumps({"out": str(out), "limit": limit}) + "\n")
        self.process.stdin.flush()
        return self.reply()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the worker leaves its loop and shuts the engine down
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # an engine core that outlived the worker


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=400, help="distinct captions, one request each")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each path")
    parser.add_argument("--parts", type=int, default=4, help="input parts of the stage (all in flight)")
    parser.add_argument("--concurrency", type=int, default=256, help="translation.concurrency")
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--max-num-batched-tokens", type=int, default=4096)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--model", help="a local model directory; default: build the tests' tiny model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--gpu-memory-utilization", type=float, help="each engine's share (three are up: keep the sum under 1)")
    parser.add_argument("--vllm-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import pyarrow as pa
    from run import caption, direct  # bench/translate/run.py: its captions and its bare HTTP loop

    from flows.config import validate_config
    from flows.translation import run_translation
    from pipelines.languages import Language
    from pipelines.stage import Counters
    from pipelines.storage import Storage
    from translate.engine import OfflineEngine as StageEngine
    from translate.launch import VllmProcess
    from translate.prompt import build_messages
    from translate.settings import TranslateSettings, VllmServers
    from translate.stage import TranslateContext, TranslationActors
    from translate.tiny_model import build_tiny_model
    from translate.validate import Validator

    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="vlmix-bench-offline-"))
    model = args.model or str(build_tiny_model(work / "model"))
    settings = TranslateSettings(cache=False, parts_in_flight=args.parts)
    language = Language(**LANGUAGES[TARGET])
    texts = [caption(i).strip() for i in range(args.prompts)]
    assert len(set(texts)) == len(texts), "captions must be distinct (no dedup)"
    keys = [f"c{i:06d}" for i in range(len(texts))]
    prompts = work / "prompts.jsonl"
    with open(prompts, "w", encoding="utf-8") as sink:  # what Translator._ask sends for each text
        for key, text in zip(keys, texts, strict=True):
            messages, budget = build_messages(text, language.name), settings.max_tokens(text)
            sink.write(json.dumps({"key": key, "messages": messages, "max_tokens": budget}) + "\n")

    limits = {"max_num_seqs": args.max_num_seqs, "max_num_batched_tokens": args.max_num_batched_tokens}
    engine = {
        "dtype": args.dtype,
        "max_model_len": args.max_model_len,
        "enable_prefix_caching": False,
        **limits,
    }
    if args.gpu_memory_utilization:
        engine["gpu_memory_utilization"] = args.gpu_memory_utilization
    if args.device == "cpu":
        engine["enforce_eager"] = True  # as VllmProcess does on CPU
    extra = ["--no-enable-prefix-caching"] + [f"--{k.replace('_', '-')}={v}" for k, v in limits.items()]
    vllm = VllmServers(
        python=args.vllm_python, device=args.device, dtype=args.dtype, max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization, extra_args=extra, env=ENV,
        engine="server",
    )  # fmt: skip
    server = VllmProcess(model, vllm, device=args.device, log_path=str(work / "server.log"))
    started = time.perf_counter()
    server.start()  # both start at once; the offline engine gets the server's environment
    spec = {"model": model, "engine": engine, "prompts": str(prompts)}
    offline = OfflineEngine(args.vllm_python, spec, server.environment(), work / "offline.log")
    own = VllmServers(python=args.vllm_python, device=args.device, dtype=args.dtype,
                      max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
                      env=ENV, engine_kwargs={"enable_prefix_caching": False, **limits})  # fmt: skip
    stage_engine = StageEngine(model, own, device=args.device, log_path=str(work / "engine.log"))
    validator = Validator(language.scripts, settings.validation)
    runs: dict[str, list[dict]] = {name: [] for name in PATHS}
    try:
        load_s = offline.reply()["load_s"]
        url = server.wait_healthy(timeout_s=900)
        stage_engine.start()
        base = url[: -len("/v1")]
        print(f"up in {time.perf_counter() - started:.0f} s (offline engine {load_s:.0f} s); work {work}")

        def server_run(name: str, count: int, call) -> dict:
            tokens, caller, (frontend, engine_cpu) = (
                counters(base),
                time.process_time(),
                cpu_s(server.process.pid),
            )
            begun = time.perf_counter()
            call()
            wall = time.perf_counter() - begun
            after, (frontend2, engine2) = counters(base), cpu_s(server.process.pid)
            cpu = [time.process_time() - caller, frontend2 - frontend, engine2 - engine_cpu]
            return {"wall_s": wall, "cpu_s": cpu, **{k: after[k] - tokens[k] for k in tokens}}

        def write_parts(name: str, count: int) -> Storage:
            storage = Storage(str(work / name))
            size = -(-count // args.parts)
            for index in range(args.parts):
                chunk = slice(index * size, min(count, (index + 1) * size))
                table = pa.table(
                    {"key": keys[chunk], "field": ["caption"] * len(keys[chunk]), "text": texts[chunk]}
                )
                storage.write_parquet(
                    storage.path("translate", SOURCE, "_input", f"part-{index:05d}.parquet"), table
                )
            return storage

        def written(storage: Storage, name: str, count: int) -> dict:
            pattern = storage.path("translate", SOURCE, TARGET, "part-*.parquet")
            out = pa.concat_tables(storage.read_parquet(p) for p in storage.glob(pattern))
            if out.num_rows != count:
                raise AssertionError(f"{name}: {out.num_rows} rows of {count}")
            return dict(zip(out["key"].to_pylist(), out["raw_output"].to_pylist(), strict=True))

        def engine_run(name: str, count: int) -> dict:
            storage = write_parts(name, count)
            parts = storage.glob(storage.path("translate", SOURCE, "_input", "*.parquet"))
            stage = TranslationActors({SOURCE: (parts, [TARGET])}, settings, model, args.device, engines=1)
            ctx = TranslateContext(storage.root_uri(), storage.options, settings, {TARGET: language}, ())
            caller, (frontend, engine_cpu) = time.process_time(), cpu_s(stage_engine.process.pid)
            begun, total = time.perf_counter(), Counters()
            for unit in stage.units(ctx):  # one actor's loop: a part at a time, each one batch
                total.add(stage.run_unit(unit, ctx, stage_engine))
            wall = time.perf_counter() - begun
            frontend2, engine2 = cpu_s(stage_engine.process.pid)
            if total.failed:
                raise AssertionError(f"{name}: failed {total.failed}")
            flagged = Counter()
            for path in storage.glob(storage.path("translate", SOURCE, TARGET, "part-*.stats.json")):
                flagged.update(storage.read_json(path)["flagged"])
            raw = written(storage, name, count)
            return {"wall_s": wall, "cpu_s": [time.process_time() - caller, frontend2 - frontend, engine2 - engine_cpu],
                    "generated": total.tallies["tokens"]["generated"], "prompt": total.tallies["tokens"]["prompt"],
                    "valid": count - sum(flagged.values()), "flagged": dict(flagged), "texts": raw}  # fmt: skip

        def stage_run(name: str, count: int) -> dict:
            storage = write_parts(name, count)
            config = validate_config({
                "storage": {"root": str(work / name)},
                "tasks": {"captioning": {"share": 1.0}},
                "languages": LANGUAGES,
                "translation": {"endpoints": [url], "model": model, "concurrency": args.concurrency},
                "sources": [{"name": SOURCE, "kind": "url_list", "task": "captioning", "language": "en",
                             "locations": ["unused.parquet"], "translate_to": [TARGET]}],
            })  # fmt: skip
            reports = {}
            result = server_run(name, count, lambda: reports.update(run_translation(config, settings)))
            report = reports[SOURCE][TARGET]
            if report.failed or report.stats.rows != count:
                raise AssertionError(f"{name}: failed {report.failed}, {report.stats.rows} rows of {count}")
            raw = written(storage, name, count)
            return {**result, "valid": report.stats.translated, "flagged": report.stats.flagged, "texts": raw}

        def http_run(name: str, count: int) -> dict:
            call = lambda: asyncio.run(direct(url, model, texts[:count], args.concurrency, settings))  # noqa: E731
            return {**server_run(name, count, call), "valid": None, "flagged": {}, "texts": {}}

        def offline_run(name: str, count: int) -> dict:
            frontend, engine_cpu = cpu_s(offline.process.pid)
            result = offline.run(work / f"{name}.json", limit=count)
            frontend2, engine2 = cpu_s(offline.process.pid)
            result["cpu_s"] = [0.0, frontend2 - frontend, engine2 - engine_cpu]
            answers = json.loads((work / f"{name}.json").read_text(encoding="utf-8"))
            reasons = [validator.reason(t, *answers[k]) for k, t in zip(keys[:count], texts, strict=False)]
            flagged = {r: reasons.count(r) for r in sorted(set(reasons) - {None})}
            return {**result, "valid": reasons.count(None), "flagged": flagged,
                    "texts": {k: a[0] for k, a in answers.items()}}  # fmt: skip

        # Warm-up, untimed: a few direct requests check the counter against usage.completion_tokens.
        opener, before, usage = (
            urllib.request.build_opener(urllib.request.ProxyHandler({})),
            counters(base),
            0,
        )
        for line in prompts.read_text(encoding="utf-8").splitlines()[:8]:
            p = json.loads(line)
            body = {
                "model": model,
                "messages": p["messages"],
                "temperature": 0.0,
                "max_tokens": p["max_tokens"],
            }
            request = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})  # fmt: skip
            with opener.open(request, timeout=120) as response:
                usage += json.loads(response.read())["usage"]["completion_tokens"]
        if counters(base)["generated"] - before["generated"] != usage:
            raise AssertionError(f"/metrics disagrees with usage.completion_tokens ({usage}) on 8 requests")
        measure = {"offline": offline_run, "stage": stage_run, "http": http_run, "engine": engine_run}
        for name in PATHS:
            measure[name](f"warm-{name}", 32)
        for round_ in range(args.rounds):
            turn = round_ % len(PATHS)
            for name in PATHS[turn:] + PATHS[:turn]:  # each path first in turn
                result = measure[name](f"{name}-{round_}", len(texts))
                result["tokens_per_s"] = result["generated"] / result["wall_s"]
                runs[name].append(result)
                cpu = ", ".join(f"{c:.1f}" for c in result["cpu_s"])
                print(f"round {round_} {name:8s} {result['tokens_per_s']:6.0f} tokens/s: {result['generated']:.0f} "
                      f"generated ({result['prompt']:.0f} prompt) in {result['wall_s']:.2f} s, CPU s {cpu}, "
                      f"valid {result['valid']}/{len(texts)}", flush=True)  # fmt: skip
    finally:
        offline.stop()
        server.stop()
        stage_engine.stop()
    report(args, runs, keys, engine, server.command(), load_start)


def report(args, runs: dict[str, list[dict]], keys: list[str], engine: dict, command: list[str], load: float):
    for name in ("stage", "http", "engine"):
        if {r["generated"] for r in runs[name]} != {r["generated"] for r in runs["offline"]}:
            print(f"WARNING: {name} generated other token counts than the offline engine")
    equal = {name: [sum(s["texts"][k] == o["texts"][k] for k in keys)
                    for s, o in zip(runs[name], runs["offline"], strict=True)]
             for name in ("stage", "engine")}  # fmt: skip
    median = {name: statistics.median(r["tokens_per_s"] for r in rs) for name, rs in runs.items()}
    within = {n: statistics.median(a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs[n], runs["offline"], strict=True))
              for n in PATHS}  # fmt: skip
    summary = {
        "prompts": len(keys), "rounds": args.rounds, "concurrency": args.concurrency, "engine": engine,
        "server": " ".join(command[1:]),
        "generated_tokens": {n: sorted({r["generated"] for r in rs}) for n, rs in runs.items()},
        "prompt_tokens": {n: sorted({r["prompt"] for r in rs}) for n, rs in runs.items()},
        "flagged": {n: rs[-1]["flagged"] for n, rs in runs.items()},
        "outputs_equal_to_offline": equal,
        "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],
    }  # fmt: skip
    print(json.dumps(summary, ensure_ascii=False))
    print(
        "\n| path | generated tokens/s (median) | runs | ratio to offline: of medians, within rounds "
        "| wall s (median) | CPU s per run (median): caller, frontend, engine | rows valid |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, results in runs.items():
        per_run = ", ".join(f"{r['tokens_per_s']:.0f}" for r in results)
        wall = statistics.median(r["wall_s"] for r in results)
        cpu = ", ".join(f"{statistics.median(r['cpu_s'][i] for r in results):.1f}" for i in range(3))
        valid = "-" if results[-1]["valid"] is None else f"{results[-1]['valid']} of {len(keys)}"
        print(f"| {name} | {median[name]:.0f} | {per_run} | {median[name] / median['offline']:.2f}, "
              f"{within[name]:.2f} | {wall:.2f} | {cpu} | {valid} |")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--engine-worker":
        engine_worker(json.loads(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
