"""Benchmark: the demo pipeline with its storage root on local disk against S3 (moto's server on loopback).

The same config (the demo's sources, translation aside) runs with ``storage.root`` a local folder
and ``s3://bench/run-<i>``; each stage is timed: download, OCR, task samples, mix (plan + shards +
manifest + verify), and a full read of the shards through ``webdataset`` (``shard_urls``). Runs
alternate (local, s3, local, s3, ...) so background load hits both alike; the report gives each
stage's median seconds and the S3/local ratio, and checks that both runs made the same mixture.

    .venv/bin/python bench/scale/object_storage.py [--scale 0.05] [--repeats 2] [--samples 2000]
    .venv/bin/python bench/scale/object_storage.py --memory [--memory-samples 6000]

``--memory`` instead measures the shard writer's peak RSS streaming N and 10N samples to S3 (a
``moto_server`` process of its own, so the stored objects are not counted): it must stay flat.

What it measures: the cost of going through fsspec/s3fs and the S3 protocol (request round trips,
listing, temporary-object copies, multipart uploads) with the network taken out: moto answers on
loopback from memory, in a Python thread that competes for the same 2 cores. It does not predict
a real object store's throughput or latency (tens of ms per request, bandwidth per connection).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

BUCKET = "bench"
STAGES = ("download", "ocr", "tasks", "mix", "read")

CONFIG = """
seed: 3
storage: {{root: "{root}"}}
ray: {{num_cpus: 2}}
demo: {{directory: "{demo}", scale: {scale}}}
download: {{timeout_s: 1, max_body_bytes: 1048576, samples_per_shard: 64, threads_per_worker: 16, retry_rounds: 1}}
ocr: {{model: PP-OCRv6_tiny, batch_size: 4}}
mixture: {{total_samples: {samples}}}
shards: {{max_samples: 256}}
sources:
  - {{name: demo_laion_en, kind: url_list, task: captioning, language: en,
      locations: ["{demo}/urls/scenes.parquet"],
      columns: {{url: url, caption: caption, punsafe: punsafe, pwatermark: pwatermark, width: WIDTH, height: HEIGHT}},
      filters: {{max_punsafe: 0.5, max_pwatermark: 0.8, min_width: 64, min_caption_chars: 5}}}}
  - {{name: demo_objects365, kind: url_list, task: detection, language: en,
      locations: ["{demo}/urls/objects.parquet"], columns: {{url: url, caption: caption, extra: [objects]}}}}
  - {{name: demo_wukong_ocr, kind: url_list, task: ocr_large, language: zh,
      locations: ["{demo}/urls/text_zh.parquet"],
      columns: {{url: url, caption: caption, punsafe: punsafe, width: WIDTH, height: HEIGHT}},
      filters: {{max_punsafe: 0.5, min_width: 64}}, ocr: {{language: zh}}}}
  - {{name: demo_laioncoco_ocr, kind: url_list, task: ocr_large, language: en,
      locations: ["{demo}/urls/text_en.parquet"],
      columns: {{url: url, caption: caption, punsafe: punsafe, width: WIDTH, height: HEIGHT}},
      filters: {{max_punsafe: 0.5, min_width: 64}}, ocr: {{language: en}}}}
  - {{name: demo_synthdog, kind: url_list, task: ocr_small, language: auto,
      locations: ["{demo}/urls/synth_text.parquet"], columns: {{url: url, caption: caption, language: LANGUAGE}}}}
"""


def start_s3():
    """moto's S3 server on 127.0.0.1, announced to every later process through the environment."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    S3FileSystem().mkdir(BUCKET)
    return server


def run(tmp: Path, demo: Path, root: str, scale: float, samples: int) -> tuple[dict[str, float], dict]:
    """Seconds per stage, and what the run made (counts to compare between the two storages)."""
    import webdataset

    from flows.assemble import build_tasks_stage, download_all, mix_stage, ocr_stage
    from flows.config import load_config
    from shards.reader import shard_urls

    path = tmp / f"config-{abs(hash(root))}.yaml"
    path.write_text(CONFIG.format(root=root, demo=demo, scale=scale, samples=samples))
    config = load_config(path)
    seconds, made = {}, {}
    steps = {
        "download": lambda: download_all(config, progress=False),
        "ocr": lambda: ocr_stage(config),
        "tasks": lambda: build_tasks_stage(config),
        "mix": lambda: mix_stage(config),
    }
    for stage, step in steps.items():
        start = time.perf_counter()
        made[stage] = step()
        seconds[stage] = time.perf_counter() - start
    start = time.perf_counter()
    read = sum(1 for _ in webdataset.WebDataset(shard_urls(made["mix"]["directory"]), shardshuffle=False))
    seconds["read"] = time.perf_counter() - start
    made["read"] = read
    made["download"] = {name: (s.downloaded, dict(s.failed)) for name, s in made["download"].items()}
    made["ocr"] = {name: s.get("kept") for name, s in made["ocr"].items()}
    # Not the languages: a raw shard's row order follows img2dataset's threads, so two downloads
    # (local or not) let the seeded draw pick other rows, and auto-language sources differ.
    made["mix"] = {k: made["mix"][k] for k in ("samples", "shards", "tasks")}
    return seconds, made


_WRITER_RSS = """
import sys
sys.path.insert(0, {shards_bench!r})
from bench_shards import make_samples
from shards.writer import ShardWriter
with ShardWriter({out!r}, "rss", max_samples=5000) as writer:
    for key, image, meta in make_samples({count}, {image_kb}):
        writer.write(key, [("jpg", image), ("json", meta)])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def writer_memory(counts: list[int], image_kb: int = 30) -> None:
    """Peak RSS of a fresh process streaming ``count`` samples into shards on S3, for each count."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        shards_bench = str(Path(__file__).resolve().parents[1] / "shards")
        for count in counts:
            script = _WRITER_RSS.format(
                shards_bench=shards_bench, out=f"s3://{BUCKET}/rss-{count}", count=count, image_kb=image_kb
            )
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
            )
            seconds = time.perf_counter() - start
            mib = int(done.stdout.split()[-1]) / 1024
            print(
                f"writer to S3: {count:,} samples (~{image_kb} KiB images): peak RSS {mib:.0f} MiB, {seconds:.1f} s"
            )
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05, help="demo scale (1.0: ~3,100 URLs)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2000, help="samples in the mixture")
    parser.add_argument("--memory", action="store_true", help="measure the S3 writer's peak RSS instead")
    parser.add_argument("--memory-samples", type=int, default=6000, help="N for --memory (runs N and 10N)")
    args = parser.parse_args()
    if args.memory:
        writer_memory([args.memory_samples, 10 * args.memory_samples])
        return

    from flows.demo import DemoServer, generate, write_url_lists
    from pipelines.runtime import ensure_ray

    server = start_s3()
    ensure_ray(None, num_cpus=2)  # after the server: Ray's workers inherit AWS_ENDPOINT_URL
    tmp = Path(tempfile.mkdtemp(prefix="vlmix-bench-s3-"))
    demo = generate(tmp / "demo", seed=7, scale=args.scale, bad_url_share=0.06)
    times: dict[str, dict[str, list[float]]] = {"local": {}, "s3": {}}
    made: dict[str, list] = {"local": [], "s3": []}
    with DemoServer(demo, hang_s=5, oversized_mib=4) as demo_server:
        write_url_lists(demo, demo_server.base_url)
        for repeat in range(args.repeats):
            order = [("local", str(tmp / f"local-{repeat}")), ("s3", f"s3://{BUCKET}/run-{repeat}")]
            for kind, root in order if repeat % 2 == 0 else order[::-1]:
                seconds, result = run(tmp, demo, root, args.scale, args.samples)
                made[kind].append(result)
                for stage, value in seconds.items():
                    times[kind].setdefault(stage, []).append(value)
                print(
                    f"run {repeat} {kind:5s} " + "  ".join(f"{s} {seconds[s]:6.2f}s" for s in STAGES),
                    flush=True,
                )
    server.stop()

    same = all(a == b for a, b in zip(made["local"], made["s3"], strict=True))
    for local, s3 in zip(made["local"], made["s3"], strict=True):
        for stage in local:
            if local[stage] != s3[stage]:
                print(f"{stage} differs:\n  local {local[stage]}\n  s3    {s3[stage]}")
    first = made["local"][0]
    print(
        f"\ndemo scale {args.scale}: {sum(n for n, _ in first['download'].values())} images downloaded, "
        f"{sum(v or 0 for v in first['ocr'].values())} OCR samples kept, {first['mix']['samples']} samples "
        f"in {first['mix']['shards']} shards; same results on both storages: {same}"
    )
    print("\n| stage | local disk (s, median) | S3 on loopback (s, median) | S3 / local |")
    print("| --- | --- | --- | --- |")
    for stage in (*STAGES, "total"):
        if stage == "total":
            local = statistics.median([sum(v) for v in zip(*times["local"].values(), strict=True)])
            s3 = statistics.median([sum(v) for v in zip(*times["s3"].values(), strict=True)])
        else:
            local, s3 = statistics.median(times["local"][stage]), statistics.median(times["s3"][stage])
        print(f"| {stage} | {local:.2f} | {s3:.2f} | {s3 / local:.2f} |")


if __name__ == "__main__":
    main()
