"""The OCR stage on Ray against the same engine in a plain loop, over the same images, in one run.

    .venv/bin/python bench/ocr/bench_stage.py [--images 64] [--model PP-OCRv6_small]

Prints images/s of the plain loop (engine built, images decoded and read one by one, ONNX Runtime
using every core) and of the stage with 1 actor (2 CPUs, 2 threads) and 2 actors (1 CPU, 1 thread
each), and the ratio stage / loop. Target: ratio >= 1.0 on a 2-core machine. The stage times
include its actors' start and model load and the Parquet writes; local Ray is started first.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "ocr")]

from ocr_synth import heldout_set, jpeg_bytes, write_raw_shard  # noqa: E402

from ocr.engines import build_engine  # noqa: E402
from ocr.settings import OcrSettings  # noqa: E402
from ocr.stage import run_ocr_stage  # noqa: E402


def images(n: int) -> list[bytes]:
    pages = []
    for language in ("en", "zh"):
        for condition in ("clean", "hard"):
            pages += heldout_set(language, condition, pages=max(1, n // 4))
    return [jpeg_bytes(p.image) for p in pages[:n]]


def plain_loop(data: list[bytes], settings: OcrSettings) -> float:
    start = time.perf_counter()
    engine = build_engine(settings)
    for blob in data:
        engine.read_one(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")))
    return len(data) / (time.perf_counter() - start)


def stage(data: list[bytes], settings: OcrSettings, shards: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    try:
        per = -(-len(data) // shards)
        for s in range(shards):
            write_raw_shard(root / "raw" / "bench", s, data[s * per : (s + 1) * per])
        start = time.perf_counter()
        stats = run_ocr_stage(str(root), "bench", "en", settings)
        elapsed = time.perf_counter() - start
        assert stats["images"] == len(data), stats
        return len(data) / elapsed
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--model", default="PP-OCRv6_small")
    args = parser.parse_args()
    from pipelines.runtime import ensure_ray

    ensure_ray(None)
    data = images(args.images)
    cores = os.cpu_count()
    base = OcrSettings(model=args.model)
    loop = plain_loop(data, base)
    one = stage(data, base.model_copy(update={"concurrency": 1, "cpus_per_actor": float(cores)}), args.shards)
    two = stage(data, base.model_copy(update={"concurrency": 2, "cpus_per_actor": cores / 2}), args.shards)
    print(f"{len(data)} images, model {args.model}, {cores} cores")
    print(f"plain loop            {loop:6.2f} images/s")
    print(f"stage, 1 actor        {one:6.2f} images/s   ratio {one / loop:.2f}")
    print(f"stage, 2 actors       {two:6.2f} images/s   ratio {two / loop:.2f}")


if __name__ == "__main__":
    main()
