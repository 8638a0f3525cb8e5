"""Measure the decontamination stage: hash quality, hashing speed against a plain loop, matching at N and 10N.

    .venv/bin/python bench/decontam/run.py quality --pictures 300
    .venv/bin/python bench/decontam/run.py hashing --images 400
    .venv/bin/python bench/decontam/run.py matching --n 10000 --index exact sampled

``quality``: recall of transformed copies (resize, JPEG 60, 5% crop, brightness +-10%, a border) within
``max_distance``, false matches among distinct pictures, and the copies the index of a run of N images
compares at all. ``hashing``: images/s of hashing inside the task stage (as it reads each image) and
in the decontam stage's fallback, against ``imagehash.phash`` in a plain loop (CPU time). ``matching``:
the match pass over N and 10N synthetic hashes (10% planted near-duplicates at distance 0-10), its
time and the planted pairs it finds, for each index layout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from decontam.context import DecontamContext  # noqa: E402
from decontam.index import HashTables, band_rows  # noqa: E402
from decontam.match import MatchBuckets  # noqa: E402
from decontam.phash import distances, phash  # noqa: E402
from decontam.settings import DecontamSettings  # noqa: E402
from pipelines.stage import execute  # noqa: E402
from pipelines.storage import Storage  # noqa: E402
from tests.decontam.images import TRANSFORMS, encode, picture  # noqa: E402


def quality(args) -> None:
    limit = DecontamSettings().near_duplicates.max_distance
    originals = [picture(seed) for seed in range(args.pictures)]
    hashes = np.array([phash(encode(im)) for im in originals], dtype=np.uint64)
    total, copies = [], []
    for name, transform in TRANSFORMS.items():
        copies.append(np.array([phash(encode(transform(im))) for im in originals], dtype=np.uint64))
        d = distances(copies[-1], hashes)
        total.append((d <= limit).mean())
        print(f"{name:11s} recall {(d <= limit).mean():.3f}  median {np.median(d):.0f}  p95 {np.percentile(d, 95):.0f}")
    pairwise = distances(hashes[:, None], hashes[None, :])[np.triu_indices(len(hashes), 1)]
    print("through the index, all transforms:")
    through_index(np.tile(hashes, len(copies)), np.concatenate(copies), limit)
    print(f"all transforms recall {np.mean(total):.3f}; distinct pairs {len(pairwise)}: false matches "
          f"{(pairwise <= limit).mean():.5f}, min distance {pairwise.min()}")


def hashing(args) -> None:
    """CPU seconds (every unit runs in this process): the task stage building the same raw shards with and
    without hashing (the difference is what hashing costs where the image is first read), the decontam
    stage's fallback for tables written without hashes, and imagehash.phash in a plain loop."""
    import io

    import imagehash
    from PIL import Image

    from tasks import TaskSettings, build_task_samples
    from tests.tasks.test_tasks_build import config_source, write_raw_shard

    per_shard = args.images // 4
    datas = [encode(picture(i, (640, 480))) for i in range(4 * per_shard)]
    start = time.process_time()
    for data in datas:
        with Image.open(io.BytesIO(data)) as image:
            imagehash.phash(image)
    plain = len(datas) / (time.process_time() - start)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for hashed in (False, True):
            root = Path(tmp) / str(hashed)
            for shard in range(4):
                write_raw_shard(root, "web", f"{shard:05d}", [
                    {"key": f"{shard:04d}{i:05d}", "image": datas[shard * per_shard + i], "caption": f"picture {i}",
                     "width": 640, "height": 480, "original_width": 640, "original_height": 480}
                    for i in range(per_shard)])
            source = config_source(name="web", kind="url_list", task="captioning", language="en")
            start = time.process_time()
            build_task_samples(source, str(root), TaskSettings(perceptual_hash=hashed))
            seconds[hashed] = time.process_time() - start
        storage = Storage(str(Path(tmp) / "False"))
        tables = [("web", p, 0) for p in sorted(storage.glob(storage.path("tasks", "web", "*.parquet")))]
        ctx = DecontamContext(storage.root_uri(), {}, "_decontam/bench", DecontamSettings(), 1, len(tables))
        start = time.process_time()
        execute(HashTables(tables), ctx)
        fallback = len(datas) / (time.process_time() - start)
    in_stage = len(datas) / (seconds[True] - seconds[False])
    print(f"{len(datas)} JPEGs 640x480, CPU: plain imagehash loop {plain:.0f} images/s; task stage "
          f"{seconds[False]:.2f} s without hashing, {seconds[True]:.2f} s with: hashing inside the stage "
          f"{in_stage:.0f} images/s, ratio {in_stage / plain:.2f}; decontam stage on tables without hashes "
          f"(reads and decodes again) {fallback:.0f} images/s, ratio {fallback / plain:.2f}")


def matching(args) -> None:
    import ray  # noqa: F401  (the executor asks whether Ray is up: imported here, not in the first timing)

    rng = np.random.default_rng(0)
    for index in args.index:
        for n in (args.n, 10 * args.n):
            # pHash-like: the top bit (the DCT's constant term) set, the other 63 random; 10% planted copies
            # 0-10 bits away (flips among the 63).
            base = rng.integers(0, 2**63, n, dtype=np.uint64) | np.uint64(1 << 63)
            planted = n // 10
            flips = rng.integers(0, 11, planted)
            copies = base[:planted].copy()
            for i, k in enumerate(flips):
                for bit in rng.choice(63, k, replace=False):
                    copies[i] ^= np.uint64(1 << int(bit))
            hashes = np.concatenate([base, copies])
            settings = DecontamSettings(near_duplicates={"index": index})
            with tempfile.TemporaryDirectory() as tmp:
                storage = Storage(tmp)
                per_file = 50_000
                files = -(-len(hashes) // per_file)
                ctx = DecontamContext(storage.root_uri(), {}, "w", settings, max(1, files), files, (), len(hashes))
                ids = np.array([f"{i:09d}" for i in range(len(hashes))], dtype=object)
                for f in range(files):
                    chunk = hashes[f * per_file:(f + 1) * per_file]
                    m = len(chunk)
                    table = band_rows(ctx, chunk.tolist(), [f] * m, list(range(m)),
                                      ids[f * per_file:f * per_file + m].tolist(), ["c"] * m, ["en"] * m,
                                      [0] * m, [0] * m, [0] * m, [1] * m)
                    storage.write_parquet(ctx.path(storage, "bands", f"{f:06d}.parquet"), table.sort_by([("bucket", "ascending"), ("key", "ascending")]))
                start, cpu = time.perf_counter(), time.process_time()
                result = execute(MatchBuckets(), ctx)  # in this process (Ray is not up): its CPU time is the pass's
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                found = pads.dataset(storage.glob(ctx.path(storage, "pairs", "*[0-9].parquet")),
                                     format="parquet").to_table(columns=["id", "kept"])
            pairs = {(int(a), int(b)) for a, b in zip(found["id"].to_pylist(), found["kept"].to_pylist(), strict=True)}
            hit = np.array([(n + i, i) in pairs or (i, n + i) in pairs for i in range(planted)])
            by = {label: hit[(flips >= lo) & (flips <= hi)].mean() for label, lo, hi in
                  (("0-4", 0, 4), ("5-7", 5, 7), ("8-10", 8, 10))}
            crowded = result.counters.tallies.get("index", {})
            print(f"{index:7s} N={len(hashes):8d}: {len(settings.masks(len(hashes))):3d} bands, match {seconds:7.2f} s "
                  f"(CPU {cpu:7.2f} s, {len(hashes) / cpu:8.0f} images/CPU-s); planted pairs found {hit.mean():.3f} "
                  f"(by distance {', '.join(f'{k}: {v:.3f}' for k, v in by.items())}); crowded keys "
                  f"{crowded.get('crowded_keys', 0)}")


def through_index(hashes: np.ndarray, copies: np.ndarray, limit: int) -> None:
    """The transformed copies within the distance that the index of a run of N images compares at all."""
    close = distances(hashes, copies) <= limit
    for n in (10_000, 100_000, 1_000_000, 10_000_000, 100_000_000):
        for index in ("exact", "sampled"):
            masks = DecontamSettings(near_duplicates={"index": index}).masks(n)
            differ = hashes ^ copies
            shared = ((differ[:, None] & masks[None, :]) == 0).any(axis=1)
            print(f"  N={n:11d} {index:7s} ({len(masks):3d} bands): {(close & shared).mean():.3f} of the copies found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--pictures", type=int, default=300)
    h = sub.add_parser("hashing")
    h.add_argument("--images", type=int, default=400)
    m = sub.add_parser("matching")
    m.add_argument("--n", type=int, default=10_000)
    m.add_argument("--index", nargs="+", default=["exact", "sampled"], choices=["exact", "sampled"])
    args = parser.parse_args()
    {"quality": quality, "hashing": hashing, "matching": matching}[args.command](args)


if __name__ == "__main__":
    main()
