"""Which language an OCR transcription sample is labelled with, from the configured languages' scripts."""

from pathlib import Path

import pytest

from flows.assemble import language_of
from flows.config import Language

REPO = Path(__file__).resolve().parents[2]

LANGUAGES = {
    "zh": Language(name="Chinese", scripts=["Han"]),
    "ja": Language(name="Japanese", scripts=["Hiragana", "Katakana", "Han"]),
    "ko": Language(name="Korean", scripts=["Hangul"]),
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("一只狗在海滩上奔跑", "zh"),
        ("Nike 运动鞋 限时特价", "zh"),  # brand names stay in Latin; Han is most of it
        ("東京の夜景", "ja"),  # Han and kana: kana make it Japanese
        ("コーヒー", "ja"),
        ("서울의 밤", "ko"),
        ("OPEN 24 HOURS", "en"),
        ("2024-05-01 12:00", "en"),  # no letters at all
    ],
)
def test_language_from_scripts(text, expected):
    assert language_of(text, LANGUAGES) == expected


def test_a_configured_language_is_recognised_without_code():
    languages = LANGUAGES | {"ru": Language(name="Russian", scripts=["Cyrillic"])}
    assert language_of("Добро пожаловать", languages) == "ru"
    assert language_of("Добро пожаловать", LANGUAGES) == "en"  # not configured: the source language


def test_ocr_prompts_follow_the_language_registry():
    """A configured language gets OCR instructions without code: its own, else the English ones
    asking for an answer in it; the built-in en and zh pools stay as they are."""
    from flows.config import load_config
    from ocr.corpus import SCHEMA
    from ocr.prompts import GROUNDED, TRANSCRIBE
    from ocr.tasks import OcrTaskSettings, ocr_task_record

    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.prompt_pool("transcribe", "zh") == TRANSCRIBE["zh"]
    assert config.prompt_pool("transcribe", "en") == TRANSCRIBE["en"]  # the source language, not configured
    assert config.prompt_pool("grounded", "ko") == [f"{p} Answer in Korean." for p in GROUNDED["en"]]
    config.languages["ja"].prompts["transcribe"] = ["画像の文字を読んでください。"]
    assert config.prompt_pool("transcribe", "ja") == ["画像の文字を読んでください。"]
    assert config.prompt_pool("transcribe", "fr") == []  # not configured, no built-in pool

    # The OCR stage's records draw from those pools (here: one Japanese row, transcription only).
    settings = OcrTaskSettings(grounded_fraction=0.0, prompts=config.ocr_prompts())
    line = {"text": "東京タワー", "score": 0.99, "quad": [[0, 0], [10, 0], [10, 5], [0, 5]]}
    row = {name: None for name in SCHEMA.names} | {
        "key": "0", "source": "demo", "language": "ja", "width": 100, "height": 50, "lines": [line]
    }
    record = ocr_task_record(row, "demo", settings)
    assert record["conversations"][0]["value"].endswith("画像の文字を読んでください。")
    assert record["conversations"][1]["value"] == "東京タワー"
