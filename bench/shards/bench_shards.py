"""Benchmark: vlmix's shard writer against webdataset.ShardWriter, and memory at N and 10N samples.

    .venv/bin/python bench/shards/bench_shards.py [--samples 20000] [--image-kb 60]

1. Throughput: the same in-memory samples (a JPEG + its JSON) written by both writers to the same
   disk, same shard limits; samples/s, MB/s and the ratio (target >= 1.0). Ours also computes each
   shard's sha256 and renames it into place; webdataset's does neither.
2. Memory: peak RSS of a fresh process that streams N, then 10N, generated samples through our
   writer (target: flat).
3. The mixer's driver: peak RSS of the process calling ``mix_and_write`` at N and 10N samples (task
   tables of as many rows, made here), its passes in that process (Ray not up) and on a local
   ``ray start`` cluster the driver joins by address (``driver_rss.py``; target: flat on Ray).

    .venv/bin/python bench/shards/bench_shards.py --parts mix   # only part 3
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
sys.path.insert(0, str(HERE))

import driver_rss  # noqa: E402


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

def peak_rss_mib(script: str) -> float:
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return int(output.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--samples", type=int, default=20_000, help="N: samples of the throughput run and the RSS base"
    )
    parser.add_argument("--image-kb", type=int, default=60, help="approximate JPEG size")
    parser.add_argument("--max-samples", type=int, default=5000)
    parser.add_argument("--max-bytes", type=int, default=256 << 20)
    parser.add_argument("--parts", default="throughput,writer,mix", help="which parts to run")
    driver_rss.add_arguments(parser)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    n = args.samples
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        tmp = Path(tmp)
        if "throughput" in parts:
            samples = list(make_samples(n, args.image_kb))
            result = throughput(samples, tmp / "throughput", args.max_samples, args.max_bytes)
            del samples
            for name in ("webdataset", "vlmix"):
                r = result[name]
                print(
                    f"{name:>10}: {r['samples_per_s']:9.0f} samples/s  {r['mb_per_s']:7.1f} MB/s  ({r['seconds']:.2f} s)"
                )
            print(f"     ratio: {result['ratio']:.2f} (vlmix / webdataset samples/s; target >= 1.0)")

        if "writer" in parts:
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

        if "mix" in parts:
            rows = driver_rss.compare(tmp, n, args)
            print(f"mix_and_write driver peak RSS (VmHWM), N = {n}:\n" + driver_rss.table(rows, n))

if __name__ == "__main__":
    main()
