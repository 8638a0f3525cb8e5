"""The language of a page the OCR stage read, for a source of ``language: auto``: the script of the text
read decides, through the language registry; the configured language only when nothing tells."""

from __future__ import annotations

from ocr.shard import text_language

SCRIPTS = {"en": ["Latin"], "zh": ["Han"], "ja": ["Hiragana", "Katakana", "Han"], "ko": ["Hangul"]}


def test_the_text_read_names_its_language_by_script():
    assert text_language("Common Crawl PDF pages\nrendered and read", "zh", SCRIPTS) == "en"
    assert text_language("页面被渲染成图像\nPDF 2024", "en", SCRIPTS) == "zh"
    assert text_language("ページを読む", "zh", SCRIPTS) == "ja"  # kana tip Han-and-kana text to Japanese
    assert text_language("문서 페이지", "en", SCRIPTS) == "ko"


def test_the_configured_language_when_the_text_says_nothing():
    assert text_language("", "zh", SCRIPTS) == "zh"  # nothing read (a scan of a figure)
    assert text_language("2024 - 17 / 3.5%", "zh", SCRIPTS) == "zh"  # no letter of any script
    assert text_language("Привет мир", "zh", SCRIPTS) == "zh"  # letters of no configured language
    assert text_language("Common Crawl", "zh", None) == "zh"  # a source with one language: no detection
