"""Benchmark: peak memory of reading annotation files of real size, vlmix's streaming path against
what a user writes with the standard library.

    .venv/bin/python bench/tasks/annotations.py [--images 10000] [--bare-images 100000]
                                                [--lines 30000] [--scale 10]

Generates, in a temporary folder that is deleted afterwards:

- an Objects365-like COCO detection file of N and of scale*N images (365 categories, about 15
  annotations an image with Objects365's field set and float32-looking boxes, annotations in random
  image order as in a file written by category, ``categories`` last);
- the same with no annotations, of B and scale*B images: it isolates what grows per image;
- an InternVL-style JSON Lines file of M and scale*M multi-turn records of about 1 KB.

Each file is then read in a fresh process, so that ``ru_maxrss`` is that run's peak alone:

- baseline: ``json.load`` of the COCO file, annotations grouped by image, every image record
  visited; every JSON line parsed into a list, every record visited;
- vlmix: ``coco.partition`` + ``coco.unit_records`` of every unit; ``units.line_ranges`` +
  ``units.read_records`` of every unit (``images_per_unit`` / ``lines_per_unit`` 10,000), with the
  spill under a storage root in the same temporary folder.

Both count the records and the non-crowd objects they saw, and the benchmark checks the counts
agree. A process that only imports each side's modules gives the floor the peaks start from.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

UNIT = 10_000
WORDS = ("the a of on in with red blue small large person car dog table chair window street tree sign "
         "building left right behind front two three people sitting standing holding wearing white black "
         "green road sky water grass wall light door bottle cup plate phone screen book shelf bag").split()
CJK = "图片中的人物正在街道上行走左侧有一辆红色汽车右侧是高大的建筑物天空晴朗"


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def write_coco(path: Path, images: int, seed: int, per_image: int = 15) -> None:
    """Written as a stream: the generator never holds the file either."""
    rng = random.Random(seed)
    ids, sizes = [], []
    with path.open("w") as f:
        f.write('{"images": [')
        next_id = 1
        for i in range(images):
            next_id += rng.randint(1, 3)  # sparse ids, as in Objects365
            width, height = rng.choice(((640, 480), (1024, 768), (769, 512), (1920, 1080), (512, 683)))
            ids.append(next_id)
            sizes.append((width, height))
            f.write(("," if i else "") + json.dumps({
                "height": height, "id": next_id, "license": rng.randint(1, 8), "width": width,
                "file_name": f"images/v2/patch{next_id % 51}/objects365_v2_{next_id:08d}.jpg",
                "url": "", "flickr_url": "", "coco_url": "", "date_captured": ""}))
        f.write('], "annotations": [')
        for k in range(images * per_image):
            slot = rng.randrange(images)
            width, height = sizes[slot]
            w, h = _float32(rng.uniform(4, width / 2)), _float32(rng.uniform(4, height / 2))
            x, y = _float32(rng.uniform(0, width - w)), _float32(rng.uniform(0, height - h))
            f.write(("," if k else "") + json.dumps({
                "id": k + 1, "iscrowd": int(rng.random() < 0.01), "isfake": 0, "area": _float32(w * h),
                "isreflected": 0, "bbox": [x, y, w, h], "image_id": ids[slot],
                "category_id": rng.randint(1, 365)}))
        f.write('], "categories": [')
        f.write(",".join(json.dumps({"name": f"category {c}", "id": c, "supercategory": "thing"})
                         for c in range(1, 366)))
        f.write('], "licenses": [{"id": 1, "name": "CC BY 4.0", "url": ""}]}')


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    if rng.random() < 0.2:
        text += " " + "".join(rng.choice(CJK) for _ in range(rng.randint(10, 40)))
    return text[0].upper() + text[1:] + "."


def write_jsonl(path: Path, lines: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            turns = []
            for t in range(rng.randint(1, 3)):
                question = _sentence(rng, rng.randint(6, 20)) + "?"
                turns += [{"from": "human", "value": ("<image>\n" if t == 0 else "") + question},
                          {"from": "gpt", "value": _sentence(rng, rng.randint(30, 90 // (t + 1)))}]
            record = {"id": i, "image": f"sharegpt4v/sam/images/sa_{i + 223750}.jpg",
                      "width": rng.choice((1500, 2250, 1024)), "height": rng.choice((1500, 2250, 768)),
                      "conversations": turns}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


# --- one measurement, in its own process -------------------------------------------------------

def measure(kind: str, path: str, root: str) -> dict:
    records = objects = 0
    extra = {}
    if kind == "floor-stdlib":
        pass
    elif kind == "floor-vlmix":
        from tasks import coco, units  # noqa: F401
    elif kind == "coco-baseline":
        with open(path, "rb") as f:
            data = json.load(f)
        by_image: dict = {}
        for annotation in data["annotations"]:
            by_image.setdefault(annotation["image_id"], []).append(annotation)
        for image in data["images"]:
            records += 1
            objects += sum(1 for a in by_image.get(image["id"], ()) if not a["iscrowd"])
    elif kind == "coco-vlmix":
        from pipelines.storage import Storage
        from tasks import coco

        storage = Storage(root)
        start = time.perf_counter()
        index = coco.partition(storage, "bench", path, UNIT)
        extra["partition_s"] = round(time.perf_counter() - start, 1)
        extra["partition_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        extra["units"] = len(index["units"])
        extra["spill_files"] = len(storage.glob(storage.path("tasks", "_units", "bench", "*", "*", "*")))
        for unit in index["units"]:
            for record in coco.unit_records(storage, "bench", path, unit):
                records += 1
                objects += len(record["objects"])
    elif kind == "jsonl-baseline":
        with open(path, encoding="utf-8") as f:
            data = [json.loads(line) for line in f if line.strip()]
        for record in data:
            records += 1
            objects += len(record["conversations"])
    elif kind == "jsonl-vlmix":
        from collections import Counter

        from pipelines.storage import Storage
        from tasks import units

        storage = Storage(root)
        drops: Counter = Counter()
        ranges = units.line_ranges(storage, "bench", path, UNIT)
        extra["units"] = len(ranges)
        for start, end in ranges:
            for _, record in units.read_records(storage, path, start, end, drops):
                records += 1
                objects += len(record["conversations"])
        extra["drops"] = dict(drops)
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"rss_mib": peak_kib / 1024, "records": records, "objects": objects, **extra}


def run_measurement(kind: str, path: Path | None, root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--measure", kind, str(path or ""), str(root)],
                         check=True, capture_output=True, text=True, cwd=REPO).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    shutil.rmtree(root, ignore_errors=True)  # the spill of this run
    return result


# --- the benchmark -----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="N, images in the small COCO file")
    parser.add_argument("--bare-images", type=int, default=100_000,
                        help="B, images in the small COCO file without annotations")
    parser.add_argument("--lines", type=int, default=30_000, help="M, records in the small JSONL file")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--measure", nargs=3, metavar=("KIND", "PATH", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        sys.path.insert(0, str(REPO))
        print(json.dumps(measure(*args.measure)))
        return
    work = Path(tempfile.mkdtemp(prefix="vlmix-bench-annotations-"))
    try:
        floors = {kind: run_measurement(kind, None, work / "root")["rss_mib"]
                  for kind in ("floor-stdlib", "floor-vlmix")}
        print(f"import floor: stdlib {floors['floor-stdlib']:.0f} MiB, vlmix {floors['floor-vlmix']:.0f} MiB")
        rows = []
        files = (("coco", args.images, write_coco),
                 ("coco, no annotations", args.bare_images, partial(write_coco, per_image=0)),
                 ("jsonl", args.lines, write_jsonl))
        for label, count, writer in files:
            fmt = label.split(",")[0]
            for n in (count, count * args.scale) if count else ():
                path = work / f"{fmt}-{n}.{'json' if fmt == 'coco' else 'jsonl'}"
                start = time.perf_counter()
                writer(path, n, seed=n)
                made = time.perf_counter() - start
                base = run_measurement(f"{fmt}-baseline", path, work / "root")
                ours = run_measurement(f"{fmt}-vlmix", path, work / "root")
                if (base["records"], base["objects"]) != (ours["records"], ours["objects"]):
                    raise SystemExit(f"{path.name}: baseline saw {base}, vlmix saw {ours}")
                size = path.stat().st_size / 2**20
                rows.append((label, n, size, base, ours))
                print(f"{path.name}: {size:.0f} MiB (made in {made:.0f} s), {base['records']} records, "
                      f"{base['objects']} objects/turns; baseline {base['rss_mib']:.0f} MiB "
                      f"{base['seconds']:.1f} s; vlmix {ours['rss_mib']:.0f} MiB {ours['seconds']:.1f} s "
                      f"{ {k: v for k, v in ours.items() if k not in ('rss_mib', 'records', 'objects', 'seconds')} }",
                      flush=True)
                path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| file | records | size (MiB) | baseline peak RSS (MiB) | vlmix peak RSS (MiB) "
          "| baseline / vlmix time (s) | vlmix growth from the smaller file |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i, (label, n, size, base, ours) in enumerate(rows):
        growth = "-"
        if i % 2:
            extra = ours["rss_mib"] - rows[i - 1][4]["rss_mib"]
            growth = f"{extra:+.0f} MiB ({extra * 2**20 / (n - rows[i - 1][1]):+.0f} B a record)"
        print(f"| {label} | {n:,} | {size:.0f} | {base['rss_mib']:.0f} | {ours['rss_mib']:.0f} "
              f"| {base['seconds']:.1f} / {ours['seconds']:.1f} | {growth} |")


if __name__ == "__main__":
    main()
