"""Benchmark: the vlmix download stage against img2dataset called directly, on the same URL list.

Both download the same loopback-served images with the same settings (2 shard tasks in flight on
the same local Ray, the same threads per shard, keep_ratio_largest at 4096, sha256, WebDataset
output). Runs alternate (img2dataset, vlmix, img2dataset, vlmix, ...) so that background load hits
both alike; the report gives images/s per run, the medians and their ratio (target >= 0.95).

    .venv/bin/python bench/download/run.py [--images 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--per-shard", type=int, default=250)
    args = parser.parse_args()

    import img2dataset

    from pipelines.config import validate_config
    from pipelines.demo import DemoServer, generate, write_url_lists
    from pipelines.download import download_source
    from pipelines.runtime import ensure_ray
    from pipelines.storage import Storage

    work = Path(tempfile.mkdtemp(prefix="vlmix-bench-download-"))
    scale = args.images / 1400
    demo = generate(work / "demo", seed=1, scale=scale, bad_url_share=0.0)
    ensure_ray(None, num_cpus=2)
    results: dict[str, list[float]] = {"img2dataset": [], "vlmix": []}
    with DemoServer(demo) as server:
        url_list = write_url_lists(demo, server.base_url)["scenes"]
        import pyarrow.parquet as pq

        n_urls = pq.read_metadata(url_list).num_rows
        for repeat in range(args.repeats):
            out = work / f"i2d-{repeat}"
            started = time.perf_counter()
            img2dataset.download(
                url_list=str(url_list), input_format="parquet", url_col="url", caption_col="caption",
                output_folder=str(out), output_format="webdataset", processes_count=2, thread_count=args.threads,
                image_size=4096, resize_mode="keep_ratio_largest", resize_only_if_bigger=True,
                skip_reencode=True, encode_format="jpg", number_sample_per_shard=args.per_shard,
                distributor="ray", extract_exif=False, compute_hash="sha256", timeout=10, enable_wandb=False,
            )
            elapsed = time.perf_counter() - started
            ok = sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))
            results["img2dataset"].append(ok / elapsed)

            config = validate_config({
                "storage": {"root": str(work / f"vlmix-{repeat}")},
                "download": {"samples_per_shard": args.per_shard, "threads_per_worker": args.threads,
                             "max_workers": 2, "retry_rounds": 1},
                "tasks": {"captioning": {"share": 1.0}},
                "sources": [{"name": "scenes", "kind": "url_list", "task": "captioning", "language": "en",
                             "locations": [str(url_list)]}],
            })
            storage = Storage(config.storage.root)
            started = time.perf_counter()
            stats = download_source(config, config.sources[0], storage, progress=False)
            elapsed = time.perf_counter() - started
            results["vlmix"].append(stats.downloaded / elapsed)
            print(f"run {repeat}: img2dataset {results['img2dataset'][-1]:.0f} img/s ({ok}/{n_urls}), "
                  f"vlmix {results['vlmix'][-1]:.0f} img/s ({stats.downloaded}/{n_urls})", flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(json.dumps({"images": n_urls, "median_images_per_s": {k: round(v, 1) for k, v in medians.items()},
                      "ratio_vlmix_over_img2dataset": round(medians["vlmix"] / medians["img2dataset"], 3)}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # img2dataset spawns processes: the guard is required
    main()
