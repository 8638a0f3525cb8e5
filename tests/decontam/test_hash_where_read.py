"""The task stage hashes each image as it reads it (a run that decontaminates), and the decontamination
stage uses those hashes instead of reading the images again."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from decontam import DecontamSettings, run_decontam
from pipelines.phash import phash
from pipelines.storage import Storage
from tasks import TaskSettings, build_task_samples
from tests.decontam.images import encode, picture
from tests.tasks.test_tasks_build import config_source, write_raw_shard


def _records(pictures: list[int], quality: int) -> list[dict]:
    out = []
    for number, seed in enumerate(pictures):
        image = picture(seed)
        out.append({"key": f"{number:09d}", "image": encode(image, quality=quality), "caption": f"a picture {number}",
                    "width": image.width, "height": image.height, "original_width": image.width,
                    "original_height": image.height})
    return out


def test_the_task_stage_hashes_as_it_reads_and_decontam_reads_no_image_again(tmp_path):
    web, coco = _records([1, 2, 3], 90), _records([3, 4], 60)  # picture 3 in both, re-encoded
    expected = [phash(record["image"]) for record in web]
    write_raw_shard(tmp_path, "web", "00000", web)
    write_raw_shard(tmp_path, "coco", "00000", coco)
    for name in ("web", "coco"):
        source = config_source(name=name, kind="url_list", task="captioning", language="en")
        build_task_samples(source, str(tmp_path), TaskSettings(seed=1, perceptual_hash=True))
    table = pq.read_table(tmp_path / "tasks" / "web" / "00000.parquet").sort_by("key")
    assert [[h & (2**64 - 1) for h in hashes] for hashes in table["image_phash"].to_pylist()] == [[h] for h in expected]
    # Without the raw shards the images cannot be read again: the stage works from the hashes alone.
    shutil.rmtree(tmp_path / "raw")
    summary = run_decontam(tmp_path, DecontamSettings(near_duplicates={"scope": "image"}), order=["web", "coco"])
    assert summary["removed"] == {"coco": {"near_duplicate": 1}, "web": {}}
    assert summary["unreadable"]["training"] == {}
    removed = pq.read_table(Storage(str(tmp_path)).path("decontam", "coco")).to_pylist()
    assert [(row["id"], row["kept"]) for row in removed] == [("coco-000000000", "web-000000002")]


def test_a_run_that_does_not_decontaminate_leaves_the_column_empty(tmp_path):
    write_raw_shard(tmp_path, "web", "00000", _records([1], 90))
    build_task_samples(config_source(name="web", kind="url_list", task="captioning", language="en"), str(tmp_path),
                       TaskSettings(seed=1))
    assert pq.read_table(tmp_path / "tasks" / "web" / "00000.parquet")["image_phash"].to_pylist() == [None]
