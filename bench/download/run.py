"""Benchmark: the vlmix download stage against img2dataset called directly, on the same URL lists.

Both download the same loopback-served demo images with the same settings (2 shard tasks in
flight on the same local Ray, the same threads per shard and socket timeout, keep_ratio_largest
at 4096, sha256, WebDataset output), in two runs:

- clean: every URL answers at once. Runs alternate (img2dataset, vlmix, ...) so that background
  load hits both alike; images/s per run, medians and their ratio (target >= 1.0).
- trickle: the same list with 1% of its URLs (every 100th) served by a second host that sends
  one byte a second, for at most ``--trickle-s`` seconds, then the rest of the image. images/s of
  both, and per shard its tail: the time from its 99th-percentile URL to its last one finishing,
  as the servers saw them end (a request ends when its body is sent or its client hangs up).

vlmix keeps its defaults for what img2dataset lacks (the wall-clock bound per URL of
3 x timeout, 16 connections per host per shard task, a retry pass that retries a too_slow URL
once). The whole benchmark is bounded by ``--max-seconds``.

    .venv/bin/python bench/download/run.py [--images 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


class LoggingServer(ThreadingHTTPServer):
    """Serves a folder; ``/trickle/<path>`` trickles. Logs when each request's answer ended."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 512

    def __init__(self, root: Path, trickle_s: float):
        self.root, self.trickle_s = root, trickle_s
        self.ended: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root)))
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def log_end(self, path: str) -> None:
        with self.lock:
            self.ended[path].append(time.monotonic())

    def reset(self) -> None:
        with self.lock:
            self.ended.clear()


class _Handler(SimpleHTTPRequestHandler):
    server: LoggingServer

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        try:
            if self.path.startswith("/trickle/"):
                self._trickle(self.path[len("/trickle/"):])
            else:
                super().do_GET()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.server.log_end(self.path)

    def _trickle(self, relative: str) -> None:
        body = (self.server.root / relative).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        started, sent = time.monotonic(), 0
        while sent < len(body) - 1 and time.monotonic() - started < self.server.trickle_s:
            readable, _, _ = select.select([self.connection], [], [], 1.0)
            if readable and not self.connection.recv(1, 0x2):  # MSG_PEEK: empty means the client left
                return
            self.wfile.write(body[sent:sent + 1])
            self.wfile.flush()
            sent += 1
        self.wfile.write(body[sent:])


def shard_tails(server_logs: list[LoggingServer], urls: list[str], per_shard: int, started: float) -> list[float]:
    """Per first-pass shard: seconds from its 99th-percentile URL's end to its last URL's end."""
    ended = {}
    for server in server_logs:
        for path, times in server.ended.items():
            ended[server.base + path] = min(times)  # the first pass's request (a retry comes later)
    tails = []
    for first in range(0, len(urls), per_shard):
        times = sorted(ended[url] - started for url in urls[first:first + per_shard] if url in ended)
        if times:
            tails.append(times[-1] - times[math.ceil(0.99 * len(times)) - 1])
    return tails


def img2dataset_failures(out: Path) -> dict[str, int]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from download import classify_error

    failed: dict[str, int] = defaultdict(int)
    for path in out.glob("*.parquet"):
        table = pq.read_table(path, columns=["status", "error_message"])
        for message in table.filter(pc.not_equal(table["status"], "success"))["error_message"].to_pylist():
            failed[classify_error(message)[0]] += 1
    return dict(failed)


def run_img2dataset(url_list: Path, out: Path, args) -> tuple[int, float]:
    import img2dataset

    started = time.perf_counter()
    img2dataset.download(
        url_list=str(url_list), input_format="parquet", url_col="url", caption_col="caption",
        output_folder=str(out), output_format="webdataset", processes_count=2, thread_count=args.threads,
        image_size=4096, resize_mode="keep_ratio_largest", resize_only_if_bigger=True,
        skip_reencode=True, encode_format="jpg", number_sample_per_shard=args.per_shard,
        distributor="ray", extract_exif=False, compute_hash="sha256", timeout=args.timeout, enable_wandb=False,
    )
    elapsed = time.perf_counter() - started
    return sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json")), elapsed


def run_vlmix(url_list: Path, root: Path, args) -> tuple[int, float, dict]:
    from download import download_source
    from flows.config import validate_config
    from pipelines.storage import Storage

    config = validate_config({
        "storage": {"root": str(root)},
        "download": {"samples_per_shard": args.per_shard, "threads_per_worker": args.threads, "max_workers": 2,
                     "retry_rounds": 1, "timeout_s": args.timeout},
        "tasks": {"captioning": {"share": 1.0}},
        "sources": [{"name": "scenes", "kind": "url_list", "task": "captioning", "language": "en",
                     "locations": [str(url_list)]}],
    })
    started = time.perf_counter()
    stats = download_source(config.download, config.sources[0], Storage(config.storage.root), progress=False)
    return stats.downloaded, time.perf_counter() - started, dict(stats.failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of the clean list")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--per-shard", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per socket operation, both")
    parser.add_argument("--trickle-s", type=float, default=60.0, help="longest a trickling answer lasts")
    parser.add_argument("--max-seconds", type=int, default=1800, help="the whole benchmark's bound")
    args = parser.parse_args()

    def give_up(*_):
        raise TimeoutError(f"the benchmark ran past --max-seconds {args.max_seconds}")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(args.max_seconds)

    import pyarrow as pa
    import pyarrow.parquet as pq

    from flows.demo import generate, write_url_lists
    from pipelines.runtime import ensure_ray

    work = Path(tempfile.mkdtemp(prefix="vlmix-bench-download-"))
    demo = generate(work / "demo", seed=1, scale=args.images / 1400, bad_url_share=0.0)
    ensure_ray(None, num_cpus=2)
    images, trickler = LoggingServer(demo, args.trickle_s), LoggingServer(demo, args.trickle_s)
    clean_list = write_url_lists(demo, images.base)["scenes"]
    clean = pq.read_table(clean_list)
    urls = clean["url"].to_pylist()
    trickled = [f"{trickler.base}/trickle/{u.split('/', 3)[3]}" if i % 100 == 50 else u for i, u in enumerate(urls)]
    trickle_list = work / "trickle.parquet"
    pq.write_table(clean.set_column(clean.schema.get_field_index("url"), "url", pa.array(trickled)), trickle_list)
    report: dict = {"images": len(urls), "per_shard": args.per_shard, "threads": args.threads,
                    "timeout_s": args.timeout, "trickling_urls": sum(u != t for u, t in zip(urls, trickled, strict=True))}
    try:
        clean_rates: dict[str, list[float]] = {"img2dataset": [], "vlmix": []}
        for repeat in range(args.repeats):
            ok, elapsed = run_img2dataset(clean_list, work / f"i2d-{repeat}", args)
            clean_rates["img2dataset"].append(ok / elapsed)
            got, elapsed_v, _ = run_vlmix(clean_list, work / f"vlmix-{repeat}", args)
            clean_rates["vlmix"].append(got / elapsed_v)
            print(f"clean run {repeat}: img2dataset {ok / elapsed:.0f} img/s ({ok}/{len(urls)}), "
                  f"vlmix {got / elapsed_v:.0f} img/s ({got}/{len(urls)})", flush=True)
        medians = {name: statistics.median(values) for name, values in clean_rates.items()}
        report["clean"] = {"median_images_per_s": {k: round(v, 1) for k, v in medians.items()},
                           "ratio_vlmix_over_img2dataset": round(medians["vlmix"] / medians["img2dataset"], 3)}

        trickle: dict = {}
        for name in ("img2dataset", "vlmix"):
            images.reset()
            trickler.reset()
            started = time.monotonic()
            if name == "img2dataset":
                ok, elapsed = run_img2dataset(trickle_list, work / "i2d-trickle", args)
                failed = img2dataset_failures(work / "i2d-trickle")
            else:
                ok, elapsed, failed = run_vlmix(trickle_list, work / "vlmix-trickle", args)
            tails = shard_tails([images, trickler], trickled, args.per_shard, started)
            trickle[name] = {"images": ok, "seconds": round(elapsed, 1), "images_per_s": round(ok / elapsed, 1),
                             "shard_tail_s": {"median": round(statistics.median(tails), 1),
                                              "max": round(max(tails), 1)}}
            trickle[name]["failed"] = failed
            print(f"trickle, {name}: {json.dumps(trickle[name])}", flush=True)
        trickle["ratio_vlmix_over_img2dataset"] = round(
            trickle["vlmix"]["images_per_s"] / trickle["img2dataset"]["images_per_s"], 3)
        report["trickle"] = trickle
    finally:
        signal.alarm(0)
        print(json.dumps(report))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # img2dataset spawns processes: the guard is required
    main()
