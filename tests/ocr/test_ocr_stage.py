"""The OCR stage end to end on local Ray: shards, filters, corrupt images, reruns, kill and rerun."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from conftest import REPO
from ocr_synth import heldout_set, jpeg_bytes, render_page, write_raw_shard
from PIL import Image

from ocr.settings import OcrFilterSettings, OcrSettings

pytestmark = pytest.mark.slow

SETTINGS = OcrSettings(
    model="PP-OCRv6_tiny",
    concurrency=2,
    batch_size=2,
    filters=OcrFilterSettings(min_chars=4, max_lines=3, min_text_area=0.01),
)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from pipelines.runtime import ensure_ray, shutdown_ray

    ensure_ray(None)
    yield
    shutdown_ray()


def filter_cases() -> list[bytes]:
    """One image per image-level drop reason the stage can meet, plus two good ones."""
    blank = Image.new("RGB", (400, 200), "white")
    short = render_page(["OK"], "en", seed=1)
    many = render_page(["Line one here", "Line two here", "Line three here", "Line four here"], "en", seed=2)
    small = Image.new("RGB", (3000, 2000), "white")
    small.paste(render_page(["Tiny words"], "en", seed=4).image, (10, 10))
    good = heldout_set("en", "clean", pages=2)
    return [
        jpeg_bytes(blank),
        jpeg_bytes(short.image),
        jpeg_bytes(many.image),
        jpeg_bytes(small),
        b"\xff\xd8\xff\xe0 this is not a jpeg",
        *(jpeg_bytes(p.image) for p in good),
    ]


def test_stage_counts_every_reason_skips_corrupt_images_and_reruns_nothing(tmp_path):
    from ocr.stage import run_ocr_stage

    raw = tmp_path / "raw" / "signs"
    keys0 = write_raw_shard(raw, 0, filter_cases())
    keys1 = write_raw_shard(raw, 1, [jpeg_bytes(p.image) for p in heldout_set("zh", "clean", pages=2)])
    write_raw_shard(raw, 2, [jpeg_bytes(Image.new("RGB", (64, 64)))], complete=False)  # still downloading

    stats = run_ocr_stage(str(tmp_path), "signs", "en", SETTINGS)

    out = tmp_path / "ocr" / "signs"
    assert sorted(p.name for p in out.glob("*.parquet")) == ["00000.parquet", "00001.parquet"]
    assert not list(out.glob("*.tmp-*"))
    table = pq.read_table(out / "00000.parquet")
    assert table.column("key").to_pylist() == keys0
    reasons = dict(zip(table.column("key").to_pylist(), table.column("drop_reason").to_pylist(), strict=True))
    assert [reasons[k] for k in keys0] == [
        "no_text",
        "too_few_chars",
        "too_many_lines",
        "small_text_area",
        "undecodable_image",
        None,
        None,
    ]
    assert stats["images"] == len(keys0) + len(keys1) and stats["kept"] == 2 + len(keys1)
    assert stats["dropped"] == {
        "no_text": 1,
        "too_few_chars": 1,
        "too_many_lines": 1,
        "small_text_area": 1,
        "undecodable_image": 1,
    }
    assert json.loads((out / "stats.json").read_text())["dropped"] == stats["dropped"]
    row = table.slice(5, 1).to_pylist()[0]
    assert row["image_uri"] == "raw/signs/00000.tar" and row["image_format"] == "jpg"
    with open(raw / "00000.tar", "rb") as f:
        f.seek(row["image_offset"])
        assert hashlib.sha256(f.read(row["image_size"])).hexdigest() == row["image_sha256"]
    assert row["text"] and row["text"] == "\n".join(ln["text"] for ln in row["lines"])

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    again = run_ocr_stage(str(tmp_path), "signs", "en", SETTINGS)
    assert again["shards_this_run"] == 0 and again["images"] == stats["images"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == mtimes


def test_killed_run_then_rerun_has_no_duplicate_and_no_missing_row(tmp_path):
    from ocr.stage import run_ocr_stage

    raw = tmp_path / "raw" / "signs"
    pages = heldout_set("en", "clean", pages=4) + heldout_set("zh", "clean", pages=4)
    keys = []
    for shard in range(4):
        keys += write_raw_shard(raw, shard, [jpeg_bytes(p.image) for p in pages[2 * shard : 2 * shard + 2]])
    out = tmp_path / "ocr" / "signs"
    cmd = [sys.executable, "-m", "ocr.cli", "--root", str(tmp_path), "--source", "signs", "--language", "en"]
    cmd += ["--model", "PP-OCRv6_tiny", "--concurrency", "1", "--batch-size", "1"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 180
    while time.time() < deadline and not list(out.glob("*.parquet")) and proc.poll() is None:
        time.sleep(0.2)
    # Kill the whole process group (the driver and the Ray it started), as a crash would.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {p.name for p in out.glob("*.parquet")}
    assert finished_before, "the first run finished no shard before it was killed"

    stats = run_ocr_stage(str(tmp_path), "signs", "en", SETTINGS)

    assert stats["shards_this_run"] == 4 - len(finished_before)
    rows = [
        k
        for p in sorted(out.glob("*.parquet"))
        for k in pq.read_table(p, columns=["key"]).column("key").to_pylist()
    ]
    assert sorted(rows) == sorted(keys) and len(rows) == len(set(rows))
