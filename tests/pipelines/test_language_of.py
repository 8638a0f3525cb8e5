"""Which language an OCR transcription sample is labelled with, from the configured languages' scripts."""

import pytest

from pipelines.assemble import language_of
from pipelines.config import Language

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
