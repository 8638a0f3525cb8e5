"""Every Table 1a preset on a tiny copy of its dataset as published: each sample's conversation is the
annotation it came from (texts, reading order, boxes on 0..1000, the chosen answer, a caption of the
image), and the awkward records are counted out by reason."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.config import Source
from ocr.prompts import GROUNDED, TRANSCRIBE
from tasks import TaskSettings, build_task_samples
from tasks.kinds import kind_of
from tasks.prompts import PROMPTS

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_published import write  # noqa: E402

SETTINGS = TaskSettings(prompts={"transcribe": TRANSCRIBE, "grounded": GROUNDED}, images_per_unit=3,
                        scripts={"en": ["Latin"], "zh": ["Han"]})
SCENE_TEXT = ("lsvt", "art", "rects", "rctw17", "ctw", "coco_text", "textocr")
QA = ("docvqa", "infovqa", "st_vqa", "chartqa", "plotqa", "mmc_inst")
LANGUAGE = {"lsvt": "zh", "art": "auto", "rects": "zh", "rctw17": "zh", "ctw": "zh", "synthdog": "auto"}
TASK = {"coco_karpathy": "captioning", "textcaps": "captioning", "all_seeing": "detection"}


def build(name: str, tmp_path, **source_fields):
    written = write(name, tmp_path / "data", n=4, seed=1)
    source = Source(name=name, kind="published", preset=name, task=TASK.get(name, "ocr_small"),
                    language=LANGUAGE.get(name, "en"), locations=[str(tmp_path / "data" / p) for p in written.locations],
                    image_root=str(tmp_path / "data" / written.image_root) if written.image_root else None,
                    image_path_strip=1 if name == "textocr" else 0, **source_fields)
    assert kind_of(source).problems(source, ["ocr_small", "captioning", "detection"]) == []
    result = build_task_samples(source, str(tmp_path / "root"), SETTINGS)
    rows = [r for p in sorted((tmp_path / "root" / "tasks" / name).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return written, result, rows


def box_1000(box, size) -> list[int]:
    (x1, y1, x2, y2), (w, h) = box, size
    return [round(x1 / w * 1000), round(y1 / h * 1000), round(x2 / w * 1000), round(y2 / h * 1000)]


@pytest.mark.parametrize("name", SCENE_TEXT)
def test_scene_text_samples_are_the_legible_lines_in_reading_order(name, tmp_path):
    written, result, rows = build(name, tmp_path)
    assert len(rows) == len(written.truth) - (name == "lsvt")  # LSVT's last image is missing
    variants = set()
    for row in rows:
        truth = written.truth[row["key"]]
        human, gpt = (turn["value"] for turn in row["conversations"])
        language = truth.get("language", LANGUAGE.get(name, "en"))
        assert row["language"] == language
        prompt = human.removeprefix("<image>\n")
        if prompt in TRANSCRIBE[language]:
            variants.add("transcription")
            assert gpt.split("\n") == [text for text, _ in truth["lines"]]
        else:
            variants.add("grounded")
            assert prompt in GROUNDED[language]
            expected = [f"<ref>{text}</ref><box>[{box_1000(box, truth['size'])}]</box>" for text, box in truth["lines"]]
            found = gpt.split("\n")
            assert len(found) == len(expected)
            for got, want in zip(found, expected, strict=True):  # a pixel of rounding either way
                got_box = [int(v) for v in re.findall(r"\d+", got.split("</ref>")[1])]
                want_box = [int(v) for v in re.findall(r"\d+", want.split("</ref>")[1])]
                assert got.split("</ref>")[0] == want.split("</ref>")[0]
                assert max(abs(a - b) for a, b in zip(got_box, want_box, strict=True)) <= 3, (got, want)
    assert variants
    assert result.drops["object:illegible_region"] == len(rows)  # one smudge per image read
    if name == "lsvt":
        assert result.drops["image_missing"] == 1 and result.drops["object:malformed_polygon"] == 1
    if name == "coco_text":
        assert result.drops["not_selected"] == 1  # the val image


def test_grounded_lines_as_quads_by_config(tmp_path):
    written, _, rows = build("rctw17", tmp_path, format={"grounded_fraction": 1.0, "box_format": "quad"})
    for row in rows:
        truth = written.truth[row["key"]]
        found = row["conversations"][1]["value"].split("\n")
        for line, (text, (x1, y1, x2, y2)) in zip(found, truth["lines"], strict=True):
            w, h = truth["size"]
            corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
            quad = [round(v / (w if i % 2 == 0 else h) * 1000) for corner in corners for i, v in enumerate(corner)]
            assert line == f"<ref>{text}</ref><quad>[{quad}]</quad>"


@pytest.mark.parametrize("name", QA)
def test_qa_samples_ask_every_question_of_an_image_with_the_most_frequent_answer(name, tmp_path):
    written, result, rows = build(name, tmp_path)
    missing = name in ("docvqa", "infovqa", "st_vqa")
    assert len(rows) == len(written.truth) - missing
    assert result.drops.get("image_missing", 0) == missing
    for row in rows:
        truth = written.truth[row["key"]] if name != "mmc_inst" else next(iter(
            t for t in written.truth.values() if t["qa"][0][1] == row["conversations"][1]["value"]))
        turns = row["conversations"]
        assert turns[0]["value"].startswith("<image>\n")
        pairs = [(turns[i]["value"].removeprefix("<image>\n"), turns[i + 1]["value"]) for i in range(0, len(turns), 2)]
        assert sorted(pairs) == sorted(truth["qa"])
    if name == "docvqa":
        assert result.drops["object:empty_answer"] == 1


def test_qa_one_conversation_per_question_by_config(tmp_path):
    written, _, rows = build("docvqa", tmp_path, format={"per_question": True})
    assert len(rows) == 2 * (len(written.truth) - 1)
    assert all(len(row["conversations"]) == 2 for row in rows)


@pytest.mark.parametrize("name", ("coco_karpathy", "textcaps"))
def test_captions_answer_a_caption_prompt_with_one_of_the_images_captions(name, tmp_path):
    written, result, rows = build(name, tmp_path)
    assert {row["key"] for row in rows} == set(written.truth)  # one per image, Karpathy's val left out
    for row in rows:
        human, gpt = (turn["value"] for turn in row["conversations"])
        assert human.removeprefix("<image>\n") in PROMPTS["caption"]["en"]
        assert gpt in written.truth[row["key"]]["captions"]
    if name == "coco_karpathy":
        assert result.drops["not_selected"] == 1


def test_all_seeing_grounded_conversations_are_kept_turn_for_turn(tmp_path):
    written, result, rows = build("all_seeing", tmp_path)
    assert len(rows) == len(written.truth) - 1 and result.drops == {"image_missing": 1}
    for row in rows:
        assert row["conversations"] == written.truth[row["key"]]["conversations"]
    assert any(len(row["conversations"]) == 4 for row in rows)


def test_synthdog_pages_from_embedded_parquet_images_are_transcribed_in_their_language(tmp_path):
    written, result, rows = build("synthdog", tmp_path)
    assert len(rows) == written.records and result.drops == {}
    texts = {truth["text"]: truth["language"] for truth in written.truth.values()}
    for row in rows:
        human, gpt = (turn["value"] for turn in row["conversations"])
        assert texts[gpt] == row["language"]
        assert human.removeprefix("<image>\n") in TRANSCRIBE[row["language"]]
        assert row["images"][0]["uri"].endswith(".embedded.bin") and row["images"][0]["format"] == "jpg"
    (root,) = {tmp_path / "root" / row["images"][0]["uri"] for row in rows[:1]}
    assert root.exists()


def test_a_format_field_overrides_the_preset_and_bad_ones_are_named(tmp_path):
    source = Source(name="x", kind="published", preset="lsvt", task="ocr_small", language="zh",
                    locations=["a.json"], image_root="i", format={"box_format": "quad", "regions": None})
    assert kind_of(source).problems(source, ["ocr_small"]) == [("format", "build 'scene_text' needs `regions`")]
    source = Source(name="x", kind="published", preset="nope", task="ocr_small", language="zh", locations=["a"])
    assert kind_of(source).problems(source, ["ocr_small"])[0][0] == "preset"
    source = Source(name="x", kind="published", preset="lsvt", task="ocr_small", language="en", locations=["a"],
                    image_root="i", translate_to=["zh"])
    assert [p[0] for p in kind_of(source).problems(source, ["ocr_small"])] == ["translate_to"]


def test_a_users_own_dataset_of_a_known_shape_needs_only_config(tmp_path):
    """The README's example: an object keyed by image, regions with their own field names."""
    import json

    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (400, 200), "white").save(tmp_path / "images" / "img_1.jpg")
    labels = {"img_1": [{"text": "出口", "poly": [[200, 100], [300, 100], [300, 150], [200, 150]], "bad": False},
                        {"text": "入口", "poly": [[20, 10], [120, 10], [120, 60], [20, 60]], "bad": False},
                        {"text": "??", "poly": [[0, 0], [5, 0], [5, 5], [0, 5]], "bad": True}]}
    (tmp_path / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    source = Source(name="my_signs", kind="published", task="ocr_small", language="zh",
                    locations=[str(tmp_path / "labels.json")], image_root=str(tmp_path / "images"),
                    format={"reader": "json", "image": "{$key}.jpg", "regions": "", "region_text": "text",
                            "region_points": "poly", "region_illegible": "bad", "build": "scene_text",
                            "grounded_fraction": 1.0})
    result = build_task_samples(source, str(tmp_path / "root"), SETTINGS)
    (row,) = [r for p in (tmp_path / "root" / "tasks" / "my_signs").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert row["conversations"][1]["value"] == ("<ref>入口</ref><box>[[50, 50, 300, 300]]</box>\n"
                                                "<ref>出口</ref><box>[[500, 500, 750, 750]]</box>")
    assert result.drops == {"object:illegible_region": 1}


def test_with_ray_up_the_json_split_runs_in_ray_tasks_and_builds_the_same(local_ray, tmp_path):
    written, result, rows = build("docvqa", tmp_path)
    assert len(rows) == len(written.truth) - 1 and result.drops["image_missing"] == 1


def test_a_truncated_json_file_fails_naming_the_file(tmp_path):
    written = write("lsvt", tmp_path / "data", n=2, seed=1)
    labels = tmp_path / "data" / written.locations[0]
    labels.write_bytes(labels.read_bytes()[:-40])
    source = Source(name="lsvt", kind="published", preset="lsvt", task="ocr_small", language="zh",
                    locations=[str(labels)], image_root=str(tmp_path / "data" / "lsvt"))
    with pytest.raises(ValueError, match=r"train_full_labels\.json: not valid JSON"):
        build_task_samples(source, str(tmp_path / "root"), SETTINGS)
