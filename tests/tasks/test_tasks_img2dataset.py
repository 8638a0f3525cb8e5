"""End to end on the real download tool: img2dataset over loopback -> task samples -> shards -> verify."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from download.stats import download_drops
from flows.config import Source
from pipelines.storage import Storage
from shards import ShardSettings, mix_and_write, verify
from shards.mix import MixSettings
from shards.reader import iter_samples
from tasks import TaskSettings, build_task_samples

_DOWNLOAD = """
import sys
from img2dataset import download

if __name__ == "__main__":
    download(
        url_list=sys.argv[1], output_folder=sys.argv[2], input_format="parquet", url_col="url",
        caption_col="caption", output_format="webdataset", processes_count=1, thread_count=4,
        number_sample_per_shard=6, resize_mode="no", disable_all_reencoding=True, compute_hash="sha256",
        distributor="multiprocessing", enable_wandb=False, timeout=5, retries=0,
    )
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def image_server(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    served = {}
    for i in range(10):
        pixels = np.random.default_rng(i).integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG")
        (folder / f"{i}.jpg").write_bytes(buffer.getvalue())
        served[i] = buffer.getvalue()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()


@pytest.mark.slow
def test_img2dataset_output_to_verified_shards(tmp_path, image_server):
    base, served = image_server
    urls = [f"{base}/{i}.jpg" for i in range(10)] + [f"{base}/missing-{i}.jpg" for i in range(2)]
    captions = [f"picture number {i}" for i in range(12)]
    pq.write_table(pa.table({"url": urls, "caption": captions}), tmp_path / "urls.parquet")
    root = tmp_path / "root"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    subprocess.run(
        [sys.executable, "-c", _DOWNLOAD, str(tmp_path / "urls.parquet"), str(root / "raw" / "demo_caps")],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )

    result = build_task_samples(
        Source(name="demo_caps", kind="url_list", task="captioning", language="en", locations=["unused.parquet"]),
        str(root),
        TaskSettings(),
    )
    assert (result.units_written, result.samples) == (2, 10)
    manifest = mix_and_write(
        str(root), root / "shards", MixSettings(total_samples=25, shares={"captioning": 1.0}), ShardSettings(),
        stage_drops={"download": download_drops(Storage(str(root)))},  # as the flow passes each stage's drops
    )
    assert verify(root / "shards").ok
    assert sum(manifest["drops"]["download"]["demo_caps"]["failed"].values()) == 2  # the two 404s, counted
    assert manifest["sources"]["demo_caps"]["repeat_time"] == 2.5
    for _key, members in iter_samples(root / "shards" / "mix-000000.tar"):
        record = json.loads(members["json"])
        number = int(record["conversations"][1]["value"].split()[-1])
        assert members["jpg"] == served[number], "the image must be the served bytes, not a re-encode"
        assert record["meta"]["url"] == f"{base}/{number}.jpg"
        assert hashlib.sha256(members["jpg"]).hexdigest() == record["meta"]["image_sha256"]
