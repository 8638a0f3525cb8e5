"""Benchmark: vlmix's shard writer against webdataset.ShardWriter, and memory at N and 10N samples.

    .venv/bin/python bench/shards/bench_shards.py [--samples 20000] [--image-kb 60]

1. Throughput: the same in-memory samples (a JPEG + its JSON) written by both writers to the same
   disk, same shard limits; samples/s, MB/s and the ratio (target >= 1.0). Ours also computes each
   shard's sha256 and renames it into place; webdataset's does neither.
2. Memory: peak RSS of a fresh process that streams N, then 10N, generated samples through our
   writer (target: flat), and of the whole ``mix_and_write`` (plan + fetch + write) at N and 10N
   over task tables made here.
"""

from __future__ import annotations

import argparse
import io
import json
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


def make_samples(count: int, image_kb: int, distinct: int = 64):
    """``count`` samples cycling over ``distinct`` noise JPEGs of about ``image_kb`` KiB."""
    side = int((image_kb * 1024 / 1.2) ** 0.5)  # noise JPEGs at quality 75 take ~1.2 bytes a pixel
    images = []
    for i in range(distinct):
        pixels = np.random.default_rng(i).integers(0, 255, (side, side, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
        images.append(buffer.getvalue())
    for i in range(count):
        record = {"id": f"bench-{i:09d}", "conversations": [{"from": "gpt", "value": f"caption {i} " * 8}]}
        yield f"bench-{i:09d}", images[i % distinct], json.dumps(record).encode()


def throughput(samples: list, out: Path, max_samples: int, max_bytes: int) -> dict:
    import webdataset

    from shards.writer import ShardWriter

    total = sum(len(image) + len(meta) for _, image, meta in samples) / 1e6
    results = {}
    for name in ("webdataset", "vlmix", "webdataset", "vlmix"):  # two rounds; the best of each counts
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        start = time.perf_counter()
        if name == "vlmix":
            with ShardWriter(folder, "bench", max_samples=max_samples, max_bytes=max_bytes) as writer:
                for key, image, meta in samples:
                    writer.write(key, [("jpg", image), ("json", meta)])
        else:
            pattern = str(folder / "bench-%06d.tar")
            with webdataset.ShardWriter(
                pattern, maxcount=max_samples, maxsize=max_bytes, verbose=0, encoder=False
            ) as w:
                for key, image, meta in samples:
                    w.write({"__key__": key, "jpg": image, "json": meta})
        seconds = time.perf_counter() - start
        best = results.get(name, {}).get("seconds", float("inf"))
        if seconds < best:
            results[name] = {
                "seconds": seconds,
                "samples_per_s": len(samples) / seconds,
                "mb_per_s": total / seconds,
            }
    results["ratio"] = results["vlmix"]["samples_per_s"] / results["webdataset"]["samples_per_s"]
    return results


_WRITER_RSS = """
import sys
sys.path[:0] = [{repo!r}, {here!r}]
from bench_shards import make_samples
from shards.writer import ShardWriter
with ShardWriter({out!r}, "rss", max_samples=5000) as writer:
    for key, image, meta in make_samples({count}, {image_kb}):
        writer.write(key, [("jpg", image), ("json", meta)])
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""

_MIX_RSS = """
import sys
sys.path.insert(0, {repo!r})
from shards.mix import MixSettings
from shards import ShardSettings, mix_and_write
mix_and_write({root!r}, {out!r}, MixSettings(total_samples={count}, shares={{"captioning": 1.0}}), ShardSettings(report=False))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def peak_rss_mib(script: str) -> float:
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return int(output.split()[-1]) / 1024


def task_tables(root: Path, rows: int, image_kb: int) -> None:
    import hashlib

    from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
    from pipelines.storage import Storage

    storage = Storage(str(root))
    (root / "images").mkdir(parents=True)
    samples = []
    for i, (key, image, _) in enumerate(make_samples(rows, image_kb, distinct=rows)):
        path = root / "images" / f"{i}.jpg"
        path.write_bytes(image)
        samples.append(
            TaskSample(
                source="bench",
                key=key,
                task="captioning",
                language="en",
                images=[Picture(ImageRef(str(path), 0, len(image)), "jpg", hashlib.sha256(image).hexdigest(), 1, 1)],
                conversations=[human_turn("Describe the image."), {"from": "gpt", "value": f"caption {i}"}],
            )
        )
    for unit in range(0, rows, 5000):
        write_task_table(storage, "bench", f"{unit // 5000:05d}", samples[unit : unit + 5000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--samples", type=int, default=20_000, help="N: samples of the throughput run and the RSS base"
    )
    parser.add_argument("--image-kb", type=int, default=60, help="approximate JPEG size")
    parser.add_argument("--max-samples", type=int, default=5000)
    parser.add_argument("--max-bytes", type=int, default=256 << 20)
    args = parser.parse_args()
    n = args.samples
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        tmp = Path(tmp)
        samples = list(make_samples(n, args.image_kb))
        result = throughput(samples, tmp / "throughput", args.max_samples, args.max_bytes)
        del samples
        for name in ("webdataset", "vlmix"):
            r = result[name]
            print(
                f"{name:>10}: {r['samples_per_s']:9.0f} samples/s  {r['mb_per_s']:7.1f} MB/s  ({r['seconds']:.2f} s)"
            )
        print(f"     ratio: {result['ratio']:.2f} (vlmix / webdataset samples/s; target >= 1.0)")

        rss = {}
        for count in (n, 10 * n):
            out = tmp / f"rss-{count}"
            rss[count] = peak_rss_mib(
                _WRITER_RSS.format(
                    repo=str(REPO), here=str(HERE), out=str(out), count=count, image_kb=args.image_kb
                )
            )
            shutil.rmtree(out)
        print(f"writer peak RSS: {rss[n]:.0f} MiB at N={n}, {rss[10 * n]:.0f} MiB at 10N={10 * n}")

        task_tables(tmp / "root", 2000, 8)
        mix = {}
        for count in (n, 10 * n):
            out = tmp / f"mix-{count}"
            mix[count] = peak_rss_mib(
                _MIX_RSS.format(repo=str(REPO), root=str(tmp / "root"), out=str(out), count=count)
            )
            shutil.rmtree(out)
        print(f"mix_and_write peak RSS: {mix[n]:.0f} MiB at N={n}, {mix[10 * n]:.0f} MiB at 10N={10 * n}")


if __name__ == "__main__":
    main()
