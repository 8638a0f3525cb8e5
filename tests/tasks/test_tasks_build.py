"""Task samples from raw img2dataset shards, COCO files and GRIT records; translated variants; OCR hook."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset
from PIL import Image

from download.stats import download_drops
from flows.config import Source
from pipelines.layout.conversations import ConversationRecord, write_conversation_table
from pipelines.layout.raw import read_image
from pipelines.layout.task_table import ImageRef, read_counters
from pipelines.storage import Storage
from tasks import TaskSettings, build_task_samples
from tasks.prompts import PROMPTS


def config_source(**fields) -> Source:
    """A source as the mixture config holds it; a url_list source reads its raw shards (its list is unused here)."""
    if fields["kind"] == "url_list":
        fields.setdefault("locations", ["unused.parquet"])
    return Source(**fields)

def jpeg(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_raw_shard(root: Path, source: str, shard: str, records: list[dict], complete: bool = True) -> None:
    """An img2dataset output shard: NNNNN.tar (jpg/txt/json), NNNNN.parquet, NNNNN_stats.json."""
    folder = root / "raw" / source
    folder.mkdir(parents=True, exist_ok=True)
    with webdataset.TarWriter(str(folder / f"{shard}.tar")) as tar:
        for record in records:
            image = record.pop("image")
            meta = {
                "url": f"http://127.0.0.1/{record['key']}.jpg",
                "key": record["key"],
                "status": "success",
                "error_message": None,
                "sha256": hashlib.sha256(image).hexdigest(),
                **record,
            }
            tar.write(
                {"__key__": record["key"], "jpg": image, "txt": record.get("caption", ""), "json": meta}
            )
    pq.write_table(pa.table({"key": [r["key"] for r in records]}), folder / f"{shard}.parquet")
    if complete:
        stats = {"count": len(records) + 2, "status_dict": {"success": len(records), "failed_to_download": 2}}
        (folder / f"{shard}_stats.json").write_text(json.dumps(stats))


def rows(root: Path, dataset: str) -> list[dict]:
    paths = sorted((root / "tasks" / dataset).glob("*.parquet"))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def caption_records(start: int, count: int, size=(40, 30)) -> list[dict]:
    return [
        {
            "key": f"{start + i:09d}",
            "image": jpeg(*size, start + i),
            "caption": f"  a photo   of thing {start + i} " if i % 5 else "",
            "width": size[0],
            "height": size[1],
            "original_width": size[0] * 2,
            "original_height": size[1] * 2,
        }
        for i in range(count)
    ]


def test_captioning_from_raw_shards(tmp_path):
    write_raw_shard(tmp_path, "laion_en", "00000", caption_records(0, 10))
    write_raw_shard(tmp_path, "laion_en", "00001", caption_records(10, 10))
    write_raw_shard(
        tmp_path, "laion_en", "00002", caption_records(20, 10), complete=False
    )  # still downloading
    source = config_source(name="laion_en", kind="url_list", task="captioning", language="en")

    result = build_task_samples(source, str(tmp_path), TaskSettings(seed=3))
    assert (result.units_written, result.samples, result.drops) == (2, 16, {"empty_caption": 4})
    table = rows(tmp_path, "laion_en")
    storage = Storage(str(tmp_path))
    for row in table:
        human, gpt = row["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n")
        assert human["value"].removeprefix("<image>\n") in PROMPTS["caption"]["en"]
        assert gpt == {"from": "gpt", "value": f"a photo of thing {int(row['key'])}"}
        (picture,) = row["images"]
        image = read_image(storage, ImageRef(picture["uri"], picture["offset"], picture["size"]))
        assert hashlib.sha256(image).hexdigest() == row["image_sha256"] == picture["sha256"]  # the original bytes
        assert image == jpeg(40, 30, int(row["key"]))
        assert (row["id"], row["language"], picture["width"], picture["height"]) == (
            f"laion_en-{row['key']}",
            "en",
            40,
            30,
        )
    assert len({row["conversations"][0]["value"] for row in table}) > 1, "prompts are drawn from the pool"
    drops, inputs = read_counters(pq.read_schema(tmp_path / "tasks" / "laion_en" / "00000.parquet"))
    assert (drops, inputs) == ({"empty_caption": 2}, 10)
    assert download_drops(storage)["laion_en"] == {"filtered": {}, "failed": {"failed_to_download": 4}}

    # A rerun skips finished units and builds the shard that was completed since.
    (tmp_path / "raw" / "laion_en" / "00002_stats.json").write_text("{}")
    before = (tmp_path / "tasks" / "laion_en" / "00000.parquet").read_bytes()
    again = build_task_samples(source, str(tmp_path), TaskSettings(seed=3))
    assert (again.units_written, again.units_skipped, again.samples) == (1, 2, 8)
    assert (tmp_path / "tasks" / "laion_en" / "00000.parquet").read_bytes() == before


def test_prompts_follow_the_language_and_the_seed(tmp_path):
    for name in ("a", "b", "c", "ja"):
        write_raw_shard(tmp_path / name, "laion_zh", "00000", caption_records(0, 20))
    source = config_source(name="laion_zh", kind="url_list", task="captioning", language="zh")
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        build_task_samples(source, str(tmp_path / name), TaskSettings(seed=seed))
    prompts = {
        name: [r["conversations"][0]["value"] for r in rows(tmp_path / name, "laion_zh")] for name in "abc"
    }
    assert all(p.removeprefix("<image>\n") in PROMPTS["caption"]["zh"] for p in prompts["a"])
    assert prompts["a"] == prompts["b"] and prompts["a"] != prompts["c"]

    # A language without a pool fails before any work; configuration adds one.
    japanese = source.model_copy(update={"language": "ja"})
    with pytest.raises(KeyError, match="no 'caption' prompts for language 'ja'"):
        build_task_samples(japanese, str(tmp_path / "ja"), TaskSettings())
    assert not (tmp_path / "ja" / "tasks").exists()
    build_task_samples(
        japanese, str(tmp_path / "ja"), TaskSettings(prompts={"caption": {"ja": ["画像を説明して。"]}})
    )
    assert {r["conversations"][0]["value"] for r in rows(tmp_path / "ja", "laion_zh")} == {
        "<image>\n画像を説明して。"
    }


def test_detection_from_raw_objects_column_scales_boxes_to_1000(tmp_path):
    objects = [{"name": "cat", "bbox": [20, 10, 50, 40]}, {"name": "dog", "bbox": [0, 0, 200, 100]}]
    records = [
        # downloaded at half size with the aspect kept: boxes (in original pixels) still fit
        {
            "key": "a",
            "image": jpeg(100, 50, 1),
            "width": 100,
            "height": 50,
            "original_width": 200,
            "original_height": 100,
            "objects": json.dumps(objects + [{"name": "cat", "bbox": [100, 50, 10, 10]}]),
        },
        {
            "key": "b",
            "image": jpeg(100, 100, 2),
            "width": 100,
            "height": 100,
            "original_width": 200,
            "original_height": 100,
            "objects": json.dumps(objects),
        },  # squashed: boxes would lie
        {
            "key": "c",
            "image": jpeg(50, 50, 3),
            "width": 50,
            "height": 50,
            "original_width": 50,
            "original_height": 50,
            "objects": json.dumps([{"name": "x", "bbox": [60, 60, 5, 5]}]),
        },  # outside
        {"key": "d", "image": jpeg(50, 50, 4), "width": 50, "height": 50, "objects": "not json"},
    ]
    write_raw_shard(tmp_path, "objects365", "00000", records)
    source = config_source(name="objects365", kind="url_list", task="detection", language="en")
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert result.drops == {
        "aspect_changed": 1,
        "no_objects": 1,
        "object:degenerate_box": 1,
        "objects_invalid_json": 1,
    }
    (row,) = rows(tmp_path, "objects365")
    assert row["conversations"][1]["value"] == (
        "<ref>cat</ref><box>[[100, 100, 350, 500], [500, 500, 550, 600]]</box>\n"
        "<ref>dog</ref><box>[[0, 0, 1000, 1000]]</box>"
    )
    assert row["conversations"][0]["value"].removeprefix("<image>\n") in PROMPTS["detect"]["en"]


def _image_folder(root: Path) -> Path:
    folder = root / "images"
    folder.mkdir()
    (folder / "1.jpg").write_bytes(jpeg(200, 100, 1))
    (folder / "2.jpg").write_bytes(jpeg(64, 64, 2))
    buffer = io.BytesIO()
    Image.new("RGB", (50, 80), "red").save(buffer, format="PNG")
    (folder / "3.png").write_bytes(buffer.getvalue())
    (folder / "4.gif").write_bytes(b"GIF89a....")
    return folder


def test_detection_from_a_coco_file(tmp_path):
    folder = _image_folder(tmp_path)
    coco = {
        "images": [
            {"id": 1, "file_name": "1.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "2.jpg", "width": 64, "height": 64},
            {"id": 3, "file_name": "3.png", "width": 50, "height": 80},
            {"id": 4, "file_name": "4.gif", "width": 10, "height": 10},
            {"id": 5, "file_name": "missing.jpg", "width": 10, "height": 10},
        ],
        "annotations": [
            {"image_id": 1, "category_id": 7, "bbox": [20, 10, 50, 40], "iscrowd": 0},
            {"image_id": 1, "category_id": 8, "bbox": [100, 50, 100, 50], "iscrowd": 0},
            {"image_id": 1, "category_id": 7, "bbox": [0, 0, 200, 100], "iscrowd": 1},
            {"image_id": 2, "category_id": 7, "bbox": [0, 0, 64, 32], "iscrowd": 1},
            {"image_id": 3, "category_id": 8, "bbox": [5, 8, 20, 40]},
            {"image_id": 4, "category_id": 8, "bbox": [1, 1, 2, 2]},
            {"image_id": 5, "category_id": 8, "bbox": [1, 1, 2, 2]},
        ],
        "categories": [{"id": 7, "name": "person"}, {"id": 8, "name": "traffic light"}],
    }
    (tmp_path / "train.json").write_text(json.dumps(coco))
    source = config_source(
        name="objects365",
        kind="coco",
        task="detection",
        language="en",
        locations=[str(tmp_path / "train.json")],
        image_root=str(folder),
    )
    result = build_task_samples(source, str(tmp_path), TaskSettings(images_per_unit=2))
    assert result.units_written == 3
    assert result.drops == {"image_undecodable": 1, "image_missing": 1, "no_objects": 1}
    found = {row["key"]: row for row in rows(tmp_path, "objects365")}
    assert found["1"]["conversations"][1]["value"] == (
        "<ref>person</ref><box>[[100, 100, 350, 500]]</box>\n<ref>traffic light</ref><box>[[500, 500, 1000, 1000]]</box>"
    )
    (picture,) = found["3"]["images"]
    assert picture["format"] == "png" and (picture["width"], picture["height"]) == (50, 80)
    assert (
        found["3"]["conversations"][1]["value"] == "<ref>traffic light</ref><box>[[100, 100, 500, 600]]</box>"
    )
    assert found["3"]["image_sha256"] == hashlib.sha256((folder / "3.png").read_bytes()).hexdigest()


def test_referring_expressions_from_grit_jsonl(tmp_path):
    folder = _image_folder(tmp_path)
    caption = "a man riding a red bike next to a dog"
    records = [
        {
            "key": "g1",
            "image": "1.jpg",
            "caption": caption,
            "ref_exps": [[0, 5, 0.1, 0.2, 0.5, 0.9, 0.8], [13, 23, 0.4, 0.5, 0.9, 1.0, 0.7]],
        },
        {"key": "g2", "image": "2.jpg", "caption": caption, "ref_exps": [[0, 5, 0.5, 0.5, 0.5, 0.9, 0.8]]},
    ]
    (tmp_path / "grit.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    source = config_source(
        name="grit",
        kind="grit_jsonl",
        task="detection",
        language="en",
        locations=[str(tmp_path / "grit.jsonl")],
        image_root=str(folder),
    )
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert result.drops == {"no_objects": 1, "object:degenerate_box": 1}
    (row,) = rows(tmp_path, "grit")
    turns = row["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt", "human", "gpt"]
    assert turns[0]["value"].startswith("<image>\n") and "<image>" not in turns[2]["value"]
    assert "<ref>a man</ref>" in turns[0]["value"] and "<ref>a red bike</ref>" in turns[2]["value"]
    assert turns[1]["value"] == "<ref>a man</ref><box>[[100, 200, 500, 900]]</box>"
    assert turns[3]["value"] == "<ref>a red bike</ref><box>[[400, 500, 900, 1000]]</box>"


def test_translated_variants(tmp_path):
    write_raw_shard(tmp_path, "coyo", "00000", caption_records(0, 6))  # keys 0 and 5 have no caption
    translations = {
        "key": ["000000001", "000000002", "000000003", "000000004"],
        "target_language": ["zh"] * 4,
        "field": ["caption"] * 4,
        "text": ["一张照片 1", "一张照片 2", "", "一张照片 4"],
        "error": [None, None, None, "wrong_script"],
    }
    (tmp_path / "translate" / "coyo" / "zh").mkdir(parents=True)  # the translation stage's layout
    pq.write_table(pa.table(translations), tmp_path / "translate" / "coyo" / "zh" / "part-00000.parquet")
    source = config_source(name="coyo", kind="url_list", task="captioning", language="en", translate_to=["zh"])
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert result.datasets == ["coyo", "coyo-zh"]
    assert result.drops == {"empty_caption": 2, "translation_flagged": 2}
    english = {row["key"]: row for row in rows(tmp_path, "coyo")}
    chinese = {row["key"]: row for row in rows(tmp_path, "coyo-zh")}
    assert sorted(english) == ["000000001", "000000002", "000000003", "000000004"]
    assert sorted(chinese) == ["000000001", "000000002"]
    row = chinese["000000001"]
    assert (row["language"], row["source"], row["id"]) == ("zh", "coyo-zh", "coyo-zh-000000001")
    assert row["conversations"][0]["value"].removeprefix("<image>\n") in PROMPTS["caption"]["zh"]
    assert row["conversations"][1]["value"] == "一张照片 1"
    assert (row["original_language"], row["original_text"]) == ("en", "a photo of thing 1")
    assert row["image_sha256"] == english["000000001"]["image_sha256"]
    with pytest.raises(FileNotFoundError, match="run the translation stage first"):
        build_task_samples(source.model_copy(update={"name": "laion"}), str(tmp_path), TaskSettings())


def test_ocr_conversations_join_their_raw_images(tmp_path):
    write_raw_shard(tmp_path, "wukong", "00000", caption_records(0, 4))
    turns = [{"from": "human", "value": "<image>\n识别图中的文字。"}, {"from": "gpt", "value": "你好"}]
    records = {k: ConversationRecord(k, "zh", turns) for k in ("000000001", "000000003", "nonexistent")}
    path = write_conversation_table(
        Storage(str(tmp_path)),
        "wukong_ocr",
        "ocr_large",
        "wukong",
        "00000",
        records,
        Counter({"min_score": 2}),
    )
    table = pq.read_table(path)
    assert table.column("key").to_pylist() == ["000000001", "000000003"]
    assert set(table.column("task").to_pylist()) == {"ocr_large"}
    assert read_counters(table.schema)[0] == {"image_missing": 1, "min_score": 2}
