"""Conversation sources (InternVL JSONL, WebDataset): kept whole, every image format a sample, and
translated with their markup intact."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from flows.config import Source
from pipelines.layout.raw import read_image
from pipelines.layout.task_table import ImageRef
from pipelines.storage import Storage
from tasks import TaskSettings, build_task_samples
from tasks.markup import markup_of
from tests.tasks.conversation_translation import translate_source


def image_bytes(fmt: str, size=(48, 32), mode="RGB") -> bytes:
    image = Image.new(mode, size, (200, 30, 30) if mode == "RGB" else None)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def rows(root: Path, dataset: str) -> list[dict]:
    return [r for p in sorted((root / "tasks" / dataset).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


GROUNDING = {
    "id": "g1", "image": "a.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nWhere is <ref>the red car</ref> parked?"},
        {"from": "gpt", "value": "<ref>The red car</ref><box>[[10, 20, 300, 400]]</box> is beside 2 trees."},
    ],
}
OCR_READ = {
    "id": "o1", "image": "a.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nRead the sign."},
        {"from": "gpt", "value": "<quad>(1,2),(30,2),(30,9),(1,9)</quad>Open 24 hours"},
    ],
}


def write_jsonl(folder: Path, records: list[dict]) -> Path:
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + "\nnot json\n")
    return path


def test_records_are_kept_whole_and_every_image_format_becomes_a_sample(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(image_bytes("JPEG"))
    (images / "b.webp").write_bytes(image_bytes("WEBP"))
    (images / "c.gif").write_bytes(image_bytes("GIF"))
    (images / "d.png").write_bytes(image_bytes("PNG", mode="RGBA"))
    (images / "cmyk.jpg").write_bytes(image_bytes("JPEG", mode="CMYK"))
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    records = [
        {"id": "multi", "image": ["a.jpg", "b.webp"], "conversations": [
            {"from": "human", "value": "Image-1: <image>\nImage-2: <image>\nWhich is redder?"},
            {"from": "gpt", "value": "Both."}, {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}]},
        {"id": "text", "conversations": [{"from": "human", "value": "2 + 2?"}, {"from": "gpt", "value": "4"}]},
        {"id": "gif", "image": "c.gif", "conversations": [{"from": "human", "value": "What is it?"},
                                                          {"from": "gpt", "value": "A red square."}]},
        {"id": "rgba", "image": "d.png", "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]},
        {"id": "cmyk", "image": "cmyk.jpg", "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]},
        {"id": "broken", "image": "broken.jpg", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"id": "lost", "image": "nowhere.jpg", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"id": "mismatch", "image": "a.jpg", "conversations": [
            {"from": "human", "value": "<image>\n<image>\nQ"}, {"from": "gpt", "value": "A"}]},
        {"id": "odd", "conversations": [{"from": "human", "value": "Q"}]},
    ]
    source = Source(name="mixed", kind="internvl_jsonl", task="ocr_small", language="en",
                    locations=[str(write_jsonl(tmp_path, records))], image_root=str(images))
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert result.drops == {"invalid_json": 1, "image_undecodable": 1, "image_missing": 1,
                            "image_placeholder_mismatch": 1, "bad_conversation": 1}
    found = {row["key"]: row for row in rows(tmp_path, "mixed")}
    assert sorted(found) == ["cmyk", "gif", "multi", "rgba", "text"]
    multi = found["multi"]
    assert [i["format"] for i in multi["images"]] == ["jpg", "webp"]
    assert [t["value"] for t in multi["conversations"]] == [t["value"] for t in records[0]["conversations"]]
    assert found["text"]["images"] == [] and found["text"]["conversations"][0]["value"] == "2 + 2?"
    assert found["gif"]["conversations"][0]["value"] == "<image>\nWhat is it?"  # placed as InternVL's loader does
    (gif,) = found["gif"]["images"]
    converted = read_image(Storage(str(tmp_path)), ImageRef(gif["uri"], gif["offset"], gif["size"]))
    with Image.open(io.BytesIO(converted)) as decoded, Image.open(images / "c.gif") as original:
        assert (gif["format"], decoded.format, decoded.size) == ("png", "PNG", (48, 32))
        assert list(decoded.convert("RGB").getdata()) == list(original.convert("RGB").getdata())  # lossless
    assert [found[k]["images"][0]["format"] for k in ("rgba", "cmyk")] == ["png", "jpg"]  # kept as they are


def test_webdataset_shards_are_read_with_every_image_in_order(tmp_path):
    shard = tmp_path / "pages-000000.tar"
    members = {
        "p0.jpg": image_bytes("JPEG", (40, 40)), "p0.1.png": image_bytes("PNG", (20, 10)),
        "p0.json": json.dumps({"conversations": [
            {"from": "human", "value": "<image>\n<image>\nCompare."}, {"from": "gpt", "value": "Same."}]}).encode(),
        "p1.jpg": image_bytes("JPEG", (30, 30)),
        "p1.json": json.dumps({"conversations": [{"from": "human", "value": "<image>\nRead."},
                                                 {"from": "gpt", "value": "Hello"}]}).encode(),
        "p2.jpg": image_bytes("JPEG"),  # no json: counted
    }
    with tarfile.open(shard, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = Source(name="pages", kind="webdataset", task="ocr_large", language="en",
                    locations=[str(tmp_path / "pages-{000000..000000}.tar")])
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert (result.units_written, result.samples, result.drops) == (1, 2, {"missing_json": 1})
    found = {row["key"]: row for row in rows(tmp_path, "pages")}
    assert [(i["format"], i["width"], i["height"]) for i in found["p0"]["images"]] == [("jpg", 40, 40), ("png", 20, 10)]
    storage = Storage(str(tmp_path))
    first = found["p0"]["images"][1]
    assert read_image(storage, ImageRef(first["uri"], first["offset"], first["size"])) == members["p0.1.png"]


def test_translation_keeps_markup_byte_for_byte_and_flags_answers_that_break_it(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(image_bytes("JPEG"))

    def grounding(key: str, answer: str) -> dict:
        return {**GROUNDING, "id": key, "conversations": [GROUNDING["conversations"][0], {"from": "gpt", "value": answer}]}

    source = Source(name="grounding", kind="internvl_jsonl", task="detection", language="en", translate_to=["zh"],
                    locations=[str(write_jsonl(tmp_path, [
                        GROUNDING, OCR_READ, grounding("g2", "<ref>A bus</ref><box>[[1, 2, 3, 4]]</box> near 7 cones."),
                        grounding("g3", "<ref>A truck</ref><box>[[5, 6, 7, 8]]</box> by 9 cones.")]))],
                    image_root=str(images))
    # Each request is a sentence whole, markup as numbered placeholders the answer may move.
    memory = {"Where is {{1}}the red car{{2}} parked?": "{{1}}红色的车{{2}}停在哪里？",
              "{{1}}The red car{{2}} is beside 2 trees.": "{{1}}红色的车{{2}}在2棵树旁边。",
              "Read the sign.": "读出标志。", "{{1}}Open 24 hours": "{{1}}24小时营业",
              "{{1}}A bus{{2}} near 7 cones.": "{{1}}一辆公交车{{2}}在八个锥桶旁。",  # loses the number
              "{{1}}A truck{{2}} by 9 cones.": "{{1}}<ref>一辆卡车</ref>{{2}}在9个锥桶旁。"}  # brings markup of its own
    asked = translate_source(tmp_path, source, lambda text: memory[text])
    # Only words are sent: no markup, no coordinates.
    assert sorted(asked) == sorted(memory)
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert result.drops == {"invalid_json": 1, "translation_flagged:number_changed": 1,
                            "translation_flagged:markup_changed": 1}
    english = {row["key"]: row for row in rows(tmp_path, "grounding")}
    chinese = {row["key"]: row for row in rows(tmp_path, "grounding-zh")}
    assert sorted(english) == ["g1", "g2", "g3", "o1"] and sorted(chinese) == ["g1", "o1"]
    for key in ("g1", "o1"):
        for original, translated in zip(english[key]["conversations"], chinese[key]["conversations"], strict=True):
            assert translated["from"] == original["from"]
            assert sorted(markup_of(translated["value"])) == sorted(markup_of(original["value"]))
    assert chinese["g1"]["conversations"][0]["value"] == "<image>\n<ref>红色的车</ref>停在哪里？"
    assert chinese["g1"]["conversations"][1]["value"] == "<ref>红色的车</ref><box>[[10, 20, 300, 400]]</box>在2棵树旁边。"
    assert chinese["o1"]["conversations"][1]["value"] == "<quad>(1,2),(30,2),(30,9),(1,9)</quad>24小时营业"
    assert chinese["g1"]["original_text"] == GROUNDING["conversations"][1]["value"]
