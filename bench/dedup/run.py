"""Measure near-duplicate detection (the decontam stage): hash quality, hashing speed against a plain loop,
matching at N and 10N.

    .venv/bin/python bench/dedup/run.py quality --pictures 400
    .venv/bin/python bench/dedup/run.py hashing --images 400
    .venv/bin/python bench/dedup/run.py matching --n 10000 --index exact sampled
    .venv/bin/python bench/dedup/run.py matching --n 40000 --index sampled --against e7433d0

``quality``: recall of transformed copies (resize, JPEG 60, 5% crop, brightness +-10%, a border) by the
pHash alone and with the dHash's confirmation, false matches among distinct pictures (observed, and the
chance a pair of distinct pictures matches, estimated from the distances' distribution, as false
neighbours an image at 10^6 ... 10^9 images), and the copies the index of a run of N images compares
at all. ``hashing``: images/s of hashing inside the task stage (as it reads each image) and in the
decontam stage's fallback, against imagehash's pHash and dHash in a plain loop (CPU time). ``matching``:
the match pass over N and 10N synthetic hashes (10% planted near-duplicates at distance 0-10), its
time and the planted pairs it finds, for each index layout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

# The packages measured: this checkout's, or another revision's (``matching --against``).
sys.path.insert(0, os.environ.get("VLMIX_BENCH_CODE") or str(Path(__file__).resolve().parents[2]))

from decontam.context import BANDS, DecontamContext, write_grouped  # noqa: E402
from decontam.index import HashTables, band_rows  # noqa: E402
from decontam.match import MatchBuckets  # noqa: E402
from decontam.phash import distances  # noqa: E402
from decontam.settings import DecontamSettings  # noqa: E402
from pipelines.stage import execute  # noqa: E402
from pipelines.storage import Storage  # noqa: E402
from tests.decontam.images import TRANSFORMS, encode, picture  # noqa: E402


def quality(args) -> None:
    from scipy.stats import norm

    from decontam.phash import hashes as image_hashes

    settings = DecontamSettings().near_duplicates
    limit, confirm = settings.max_distance, settings.confirm_distance
    originals = [picture(seed) for seed in range(args.pictures)]
    hashes = np.array([image_hashes(encode(im)) for im in originals], dtype=np.uint64)
    recall = {"pHash": [], "pHash + dHash": []}
    copies = []
    for name, transform in TRANSFORMS.items():
        copies.append(np.array([image_hashes(encode(transform(im))) for im in originals], dtype=np.uint64))
        d, c = distances(copies[-1][:, 0], hashes[:, 0]), distances(copies[-1][:, 1], hashes[:, 1])
        recall["pHash"].append((d <= limit).mean())
        recall["pHash + dHash"].append(((d <= limit) & (c <= confirm)).mean())
        print(f"{name:11s} recall pHash <= {limit}: {recall['pHash'][-1]:.3f}, and dHash <= {confirm}: "
              f"{recall['pHash + dHash'][-1]:.3f}  pHash median {np.median(d):.0f} p95 {np.percentile(d, 95):.0f}; "
              f"dHash median {np.median(c):.0f} p95 {np.percentile(c, 95):.0f}")
    for rule, values in recall.items():
        print(f"all transforms, {rule}: recall {np.mean(values):.3f} (weakest {min(values):.3f})")
    first, second = np.triu_indices(len(hashes), 1)
    p = distances(hashes[first, 0], hashes[second, 0])
    d = distances(hashes[first, 1], hashes[second, 1])
    print(f"distinct pairs {len(p)}: pHash mean {p.mean():.1f} sd {p.std():.1f} min {p.min()}; dHash mean "
          f"{d.mean():.1f} sd {d.std():.1f} min {d.min()}; correlation {np.corrcoef(p, d)[0, 1]:.2f}; observed "
          f"false matches pHash {(p <= limit).mean():.1e}, with dHash {((p <= limit) & (d <= confirm)).mean():.1e}")
    # The tails no sample of distinct pictures reaches: a normal fit of each distance (heavier-tailed than the
    # binomial of uniform bits, so the larger estimate), the two hashes taken as independent (their distances'
    # correlation is printed above; among the distinct pairs closest in pHash, see the dHash's minimum).
    by_phash = norm.cdf((limit + 0.5 - p.mean()) / p.std())
    by_dhash = norm.cdf((confirm + 0.5 - d.mean()) / d.std())
    uniform = sum(math.comb(63, k) for k in range(limit + 1)) / 2**63
    near = p <= np.percentile(p, 1)
    print(f"the 1% of distinct pairs closest in pHash (<= {np.percentile(p, 1):.0f} bits): dHash min {d[near].min()}, "
          f"mean {d[near].mean():.1f}")
    for n in (10**6, 10**8, 10**9):
        print(f"  N={n:>13,}: false neighbours an image, pHash alone {n * by_phash:.2g} (uniform bits: "
              f"{n * uniform:.2g}), with the dHash {n * by_phash * by_dhash:.2g}")
    print("through the index, all transforms:")
    through_index(np.tile(hashes, (len(copies), 1)), np.concatenate(copies), limit, confirm)


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
            imagehash.dhash(image)
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
    print(f"{len(datas)} JPEGs 640x480, CPU: plain imagehash loop (pHash and dHash) {plain:.0f} images/s; task stage "
          f"{seconds[False]:.2f} s without hashing, {seconds[True]:.2f} s with: hashing inside the stage "
          f"{in_stage:.0f} images/s, ratio {in_stage / plain:.2f}; decontam stage on tables without hashes "
          f"(reads and decodes again) {fallback:.0f} images/s, ratio {fallback / plain:.2f}")


def matching(args) -> None:
    """Per index layout, N and 10N: the band rows' build (the hash pass's share: rows made and written) and
    the match pass, CPU seconds in this process, and the fitted exponent of N; ``--against REV`` measures
    the code of git revision REV in the same run (this bench file over that revision's packages, in a
    subprocess, one size after the other), so old and new share the machine's load."""
    sizes = args.sizes or [args.n, 10 * args.n]
    old = _worktree(args.against) if args.against else None
    try:
        for index in args.index:
            rows = {"new": [], "old": []}
            for n in sizes:
                rows["new"].append(_measure(index, n))
                if args.json:
                    print(json.dumps(rows["new"][-1]), flush=True)
                    continue
                _print(index, "new" if old else "", rows["new"][-1])
                if old:
                    out = subprocess.run([sys.executable, __file__, "matching", "--index", index, "--sizes", str(n),
                                          "--json"], env={**os.environ, "VLMIX_BENCH_CODE": old}, check=True,
                                         capture_output=True, text=True).stdout
                    rows["old"].append(json.loads(out.strip().splitlines()[-1]))
                    _print(index, f"old {args.against}", rows["old"][-1])
            for label, measured in rows.items():
                if len(measured) == 2 and not args.json:
                    (a, b) = measured
                    ratio = np.log(b["images"] / a["images"])
                    print(f"{index:7s} {label}: N {a['images']} -> {b['images']}: match CPU x{b['match'] / a['match']:.1f} "
                          f"(exponent {np.log(b['match'] / a['match']) / ratio:.2f}), build + match "
                          f"x{(b['match'] + b['build']) / (a['match'] + a['build']):.1f} (exponent "
                          f"{np.log((b['match'] + b['build']) / (a['match'] + a['build'])) / ratio:.2f})")
    finally:
        if old:
            subprocess.run(["git", "worktree", "remove", "--force", old], check=False, capture_output=True)


def _worktree(revision: str) -> str:
    path = tempfile.mkdtemp(prefix="vlmix-bench-")
    subprocess.run(["git", "worktree", "add", "--detach", path, revision], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[2])
    return path


def _measure(index: str, n: int) -> dict:
    import ray  # noqa: F401  (the executor asks whether Ray is up: imported here, not in the first timing)

    # pHash-like: the top bit (the DCT's constant term) set, the other 63 random; 10% planted copies 0-10 bits
    # away (flips among the 63). Seeded by N: every revision measures the same hashes.
    rng = np.random.default_rng(n)
    base = rng.integers(0, 2**63, n, dtype=np.uint64) | np.uint64(1 << 63)
    planted = n // 10
    flips = rng.integers(0, 11, planted)
    copies = base[:planted].copy()
    for i, k in enumerate(flips):
        for bit in rng.choice(63, k, replace=False):
            copies[i] ^= np.uint64(1 << int(bit))
    hashes = np.concatenate([base, copies])
    # dHashes: random for the base, the planted copies' a few bits away (within the confirming distance).
    confirm = rng.integers(0, 2**63, n, dtype=np.uint64)
    confirm = np.concatenate([confirm, confirm[:planted] ^ np.uint64(0b1011)])
    settings = DecontamSettings(near_duplicates={"index": index})
    bands = len(settings.masks(len(hashes)))
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(tmp)
        per_file = 50_000
        files = -(-len(hashes) // per_file)
        # As the stage sizes them (decontam/run.py): one bucket per 8 tables, at most 4M band rows in one.
        buckets = max(1, -(-files // 8), -(-len(hashes) * bands // 4_000_000))
        ctx = DecontamContext(storage.root_uri(), {}, "w", settings, buckets, files, (), len(hashes))
        ids = [f"{i:09d}" for i in range(len(hashes))]
        build = time.process_time()
        for f in range(files):
            chunk = np.stack([hashes, confirm], axis=1)[f * per_file:(f + 1) * per_file]
            m = len(chunk)
            # A revision before the dHash (``--against``) takes the pHashes alone.
            given = [tuple(h) for h in chunk.tolist()] if "confirm" in BANDS.names else chunk[:, 0].tolist()
            table = band_rows(ctx, given, [f] * m, list(range(m)), ids[f * per_file:f * per_file + m],
                              ["c"] * m, ["en"] * m, [0] * m, [0] * m, [0] * m, [1] * m)
            # As the hash pass writes them: one row group per bucket, sorted by key.
            write_grouped(storage, ctx.path(storage, "bands", f"{f:06d}.parquet"), table, "bucket", "key")
        build = time.process_time() - build
        start, cpu = time.perf_counter(), time.process_time()
        result = execute(MatchBuckets(), ctx)  # in this process (Ray is not up): its CPU time is the pass's
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        found = pads.dataset(storage.glob(ctx.path(storage, "pairs", "*[0-9].parquet")),
                             format="parquet").to_table(columns=["id", "kept"])
    pairs = {(int(a), int(b)) for a, b in zip(found["id"].to_pylist(), found["kept"].to_pylist(), strict=True)}
    hit = np.array([(n + i, i) in pairs or (i, n + i) in pairs for i in range(planted)])
    by = {label: float(hit[(flips >= lo) & (flips <= hi)].mean()) for label, lo, hi in
          (("0-4", 0, 4), ("5-7", 5, 7), ("8-10", 8, 10))}
    return {"images": len(hashes), "bands": bands, "build": build, "match": cpu, "wall": seconds,
            "found": float(hit.mean()), "by_distance": by,
            "crowded_keys": int(result.counters.tallies.get("index", {}).get("crowded_keys", 0))}


def _print(index: str, label: str, r: dict) -> None:
    print(f"{index:7s} {label:12s} N={r['images']:8d}: {r['bands']:3d} bands, build {r['build']:6.2f} s, match "
          f"{r['wall']:6.2f} s (CPU {r['match']:6.2f} s, {r['images'] / r['match']:7.0f} images/CPU-s); planted pairs "
          f"found {r['found']:.3f} (by distance {', '.join(f'{k}: {v:.3f}' for k, v in r['by_distance'].items())}); "
          f"crowded keys {r['crowded_keys']}", flush=True)


def through_index(hashes: np.ndarray, copies: np.ndarray, limit: int, confirm: int) -> None:
    """The transformed copies within the distances (pHash, dHash: the last axis) that the index of a run of N
    images compares at all."""
    close = (distances(hashes[:, 0], copies[:, 0]) <= limit) & (distances(hashes[:, 1], copies[:, 1]) <= confirm)
    for n in (10_000, 100_000, 1_000_000, 10_000_000, 100_000_000):
        for index in ("exact", "sampled"):
            masks = DecontamSettings(near_duplicates={"index": index}).masks(n)
            differ = hashes[:, 0] ^ copies[:, 0]
            shared = ((differ[:, None] & masks[None, :]) == 0).any(axis=1)
            print(f"  N={n:11d} {index:7s} ({len(masks):3d} bands): {(close & shared).mean():.3f} of the copies found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--pictures", type=int, default=400)
    h = sub.add_parser("hashing")
    h.add_argument("--images", type=int, default=400)
    m = sub.add_parser("matching")
    m.add_argument("--n", type=int, default=10_000)
    m.add_argument("--index", nargs="+", default=["exact", "sampled"], choices=["exact", "sampled"])
    m.add_argument("--sizes", nargs="+", type=int, help="the N measured (default: --n and 10 x --n)")
    m.add_argument("--against", help="a git revision measured in the same run, e.g. HEAD or a commit")
    m.add_argument("--json", action="store_true", help="one JSON line per size (what --against reads)")
    args = parser.parse_args()
    {"quality": quality, "hashing": hashing, "matching": matching}[args.command](args)


if __name__ == "__main__":
    main()
