"""Decontamination against evaluation sets: images near an evaluation image, texts sharing a long n-gram."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from decontam import DecontamSettings, EvaluationSet, run_decontam
from decontam.evalsets import read_items
from decontam.text import ngrams
from pipelines.layout.removals import AUDIT, REMOVALS_DIR
from tests.decontam.images import encode, picture
from tests.decontam.tables import sample, write

ZH_QUESTION = "根据图表，二零二三年第三季度的销售额比上一季度增长了多少个百分点？"
EN_QUESTION = ("What is the total revenue reported in the fourth quarter of the fiscal year according to "
               "the table shown in this document?")


def _eval_set(tmp_path) -> EvaluationSet:
    folder = tmp_path / "evals" / "docvqa"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "doc1.png").write_bytes(encode(picture(100), "PNG"))
    (folder / "images" / "doc2.png").write_bytes(encode(picture(101), "PNG"))
    records = [
        {"id": "q1", "image": "images/doc1.png", "question": ZH_QUESTION, "answer": "百分之五"},
        {"id": "q2", "image": "images/doc2.png",
         "conversations": [{"from": "human", "value": "<image>\n" + EN_QUESTION}, {"from": "gpt", "value": "$4.2M"}]},
    ]
    (folder / "val.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    return EvaluationSet(name="docvqa_val", format="internvl_jsonl", path=str(folder / "val.jsonl"))


def test_texts_normalise_case_width_punctuation_and_lines():
    assert ngrams("ＡＢＣ，def\nGhi!", 3) == ["abc def ghi"]
    assert ngrams("「根据图表」，二零", 6) == ["根据图表二零"]


def test_training_samples_leaking_an_evaluation_set_are_removed_and_listed(tmp_path):
    settings = DecontamSettings(evaluation_sets=[_eval_set(tmp_path)], near_duplicates={"enabled": False})
    zh_leak = "请问：二零二三年第三季度的销售额是多少？"  # 二零二三年第三季度的销售额: 13 characters shared
    zh_twelve = "请问：零二三年第三季度的销售额是多少？"  # 12 shared
    en_leak = "What is the total revenue reported in the fourth quarter\nof the fiscal year according to the TABLE?"
    write(tmp_path, "web", [
        # The evaluation image resized and re-encoded as JPEG.
        sample(tmp_path, "web", "img", encode(picture(100).resize((200, 150)), quality=70), "Describe.", "A chart."),
        sample(tmp_path, "web", "zh", encode(picture(1)), zh_leak, "百分之五", language="zh"),
        sample(tmp_path, "web", "en", encode(picture(2)), "Read it.", en_leak),
        # Twelve shared words, twelve shared characters, unrelated pictures: kept.
        sample(tmp_path, "web", "twelve", encode(picture(3)),
               "What is the total revenue reported in the fourth quarter of the calendar year?", "No idea."),
        sample(tmp_path, "web", "zh12", encode(picture(5)), zh_twelve, "不知道", language="zh"),
        sample(tmp_path, "web", "clean", encode(picture(4)), "Describe the picture in detail.",
               "A red circle and a blue square on a green field."),
    ])
    summary = run_decontam(tmp_path, settings, order=["web"])
    assert summary["removed"] == {"web": {"contamination": 3}}
    assert summary["evaluation_sets"]["docvqa_val"]["items"] == 2
    audit = pq.read_table(tmp_path / REMOVALS_DIR / AUDIT).to_pylist()
    by_key = {row["key"]: row for row in audit}
    assert set(by_key) == {"web-img", "web-zh", "web-en"}
    assert by_key["web-img"]["eval_set"] == "docvqa_val" and by_key["web-img"]["eval_item"] == "q1"
    assert 0 <= by_key["web-img"]["distance"] <= settings.image_distance and by_key["web-img"]["ngram"] == ""
    assert by_key["web-zh"]["eval_item"] == "q1" and by_key["web-zh"]["distance"] == -1
    assert by_key["web-zh"]["ngram"] == "二零二三年第三季度的销售额"
    assert by_key["web-en"]["eval_item"] == "q2" and len(by_key["web-en"]["ngram"].split()) == 13


def test_every_evaluation_layout_is_read(tmp_path):
    image = encode(picture(7))
    # WebDataset: an image and a .json per key.
    tar_path = tmp_path / "eval-000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in (("a.jpg", image), ("a.json", json.dumps({"question": "q a", "answers": ["x", "y"]}).encode()),
                           ("b.png", encode(picture(8), "PNG")), ("b.txt", b"caption b")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    items = list(read_items(EvaluationSet(name="w", format="webdataset", path=str(tmp_path / "eval-{000..000}.tar"))))
    assert [(i.item, len(i.images), i.texts) for i in items] == [("a", 1, ["q a", "x", "y"]), ("b", 1, ["caption b"])]
    # Hub Parquet: an image struct column and text columns.
    pq.write_table(pa.table({"image": [{"bytes": image, "path": "p.jpg"}], "question": ["what?"], "answer": ["that"]}),
                   tmp_path / "test-0.parquet")
    items = list(read_items(EvaluationSet(name="p", format="parquet", path=str(tmp_path / "test-*.parquet"))))
    assert [(i.item, i.images, i.texts) for i in items] == [("test-0.parquet:1", [image], ["what?", "that"])]
    # A folder of images and a questions file.
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "x.jpg").write_bytes(image)
    (tmp_path / "q.jsonl").write_text(json.dumps({"image": "x.jpg", "question": "which?"}) + "\n")
    items = list(read_items(EvaluationSet(name="f", format="folder", path=str(tmp_path / "imgs"),
                                          questions=str(tmp_path / "q.jsonl"))))
    assert [(i.item, i.images, i.texts) for i in items] == [("x.jpg", [image], ["which?"])]


def test_a_missing_evaluation_file_names_it(tmp_path):
    spec = EvaluationSet(name="gone", format="parquet", path=str(tmp_path / "nothing-*.parquet"))
    with pytest.raises(FileNotFoundError, match="nothing-"):
        list(read_items(spec))
    with pytest.raises(ValueError, match="unique"):
        DecontamSettings(evaluation_sets=[spec, spec])


def test_a_rerun_after_the_evaluation_set_changed_starts_afresh(tmp_path):
    spec = _eval_set(tmp_path)
    settings = DecontamSettings(evaluation_sets=[spec], near_duplicates={"enabled": False})
    write(tmp_path, "web", [sample(tmp_path, "web", "en", encode(picture(2)), "Read it.", EN_QUESTION)])
    assert run_decontam(tmp_path, settings)["removed"] == {"web": {"contamination": 1}}
    Path(spec.path).write_text(json.dumps({"id": "q9", "question": "Something else entirely."}) + "\n")
    assert run_decontam(tmp_path, settings)["removed"] == {"web": {}}


def test_the_translation_of_a_leaking_sample_goes_with_it(tmp_path):
    settings = DecontamSettings(evaluation_sets=[_eval_set(tmp_path)], near_duplicates={"enabled": False})
    write(tmp_path, "web", [sample(tmp_path, "web", "en", encode(picture(2)), "Read it.", EN_QUESTION),
                            sample(tmp_path, "web", "ok", encode(picture(3)), "Read it.", "Nothing here.")])
    write(tmp_path, "web-zh", [
        sample(tmp_path, "web-zh", "en", encode(picture(2)), "读一下。", "根据本文件中的表格，财政年度第四季度报告的总收入是多少？",
               language="zh"),
        sample(tmp_path, "web-zh", "ok", encode(picture(3)), "读一下。", "这里什么都没有。", language="zh")])
    summary = run_decontam(tmp_path, settings)
    assert summary["removed"] == {"web": {"contamination": 1}, "web-zh": {"contamination": 1}}
    audit = {row["key"]: row for row in pq.read_table(tmp_path / REMOVALS_DIR / AUDIT).to_pylist()}
    assert audit["web-zh-en"]["eval_item"] == "q2" and audit["web-zh-en"]["ngram"] == audit["web-en"]["ngram"]
