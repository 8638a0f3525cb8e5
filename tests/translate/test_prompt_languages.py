"""The Figure-5 prompt, script recognition and answer validation: pure functions, no server."""

from __future__ import annotations

import pytest

from pipelines.languages import Language, ScriptProfile, UnknownScript
from translate.prompt import PROMPT_VERSION, SYSTEM_TEMPLATE, build_messages
from translate.settings import TranslateSettings, ValidationSettings
from translate.validate import Validator

# The report's Figure 5 (SPEC §2), for Chinese, typed out here on purpose: the test fails if a
# character of the template changes (curly quotes, the full stop inside them, original’s).
FIGURE_5_CHINESE = (
    "You are a translator proficient in English and Chinese. Your task is to translate the following "
    "English text into Chinese, focusing on a natural and fluent result that avoids “translationese.” "
    "Please consider these points:1. Keep proper nouns, brands, and geographical names in English.2. "
    "Retain technical terms or jargon in English, but feel free to explain in Chinese if necessary.3. Use "
    "Chinese idiomatic expressions for English idioms or proverbs to ensure cultural relevance.4. Ensure "
    "quotes or direct speech sound natural in Chinese, maintaining the original’s tone.5. For acronyms, "
    "provide the full form in Chinese with the English acronym in parentheses."
)


def test_messages_are_figure_5_verbatim():
    messages = build_messages("A red {bus} near the Eiffel Tower.", "Chinese")
    assert messages == [
        {"role": "system", "content": FIGURE_5_CHINESE},
        {"role": "user", "content": "Text for translation: A red {bus} near the Eiffel Tower."},
    ]
    assert "\u201ctranslationese.\u201d" in messages[0]["content"]
    assert "original\u2019s" in messages[0]["content"]


def test_language_goes_into_every_slot():
    system = build_messages("x", "Japanese")[0]["content"]
    assert system.count("Japanese") == SYSTEM_TEMPLATE.count("{language}") == 6
    assert "Chinese" not in system and "{language}" not in system


def test_prompt_version_names_the_template():
    assert PROMPT_VERSION.startswith("fig5-") and len(PROMPT_VERSION) == len("fig5-") + 12


@pytest.mark.parametrize(
    ("scripts", "text", "expected"),
    [
        (["Han"], "海滩上的一只狗", 1.0),
        (["Han"], "Nike 运动鞋", 0.75),  # a brand kept in English, as the prompt asks
        (["Han"], "a dog on the beach", 0.0),
        (["Hiragana", "Katakana", "Han"], "ビーチにいる犬", 1.0),  # ー is Katakana by extension
        (["Hangul"], "해변에 있는 개", 1.0),
        (["Cyrillic"], "собака на пляже", 1.0),
        (["Latin"], "un chien sur la plage", 1.0),
        (["Han"], "2024 — 123!", 1.0),  # no letters at all: nothing to object to
    ],
)
def test_script_share(scripts, text, expected):
    assert ScriptProfile(scripts).share(text) == pytest.approx(expected)


def test_unknown_script_is_a_clear_error():
    with pytest.raises(UnknownScript, match="Hanzi"):
        ScriptProfile(["Hanzi"])


@pytest.mark.parametrize(
    ("output", "finish", "reason"),
    [
        ("一只狗在海滩上奔跑。", "stop", None),
        ("   ", "stop", "empty_output"),
        ("Text for translation: 一只狗", "stop", "prompt_leftover"),
        ("I'm sorry, but I can't translate that.", "stop", "refusal"),
        ("抱歉，我无法翻译。", "stop", "refusal"),
        ("A dog runs on the beach.", "stop", "identical_to_source"),
        ("a dog runs on the beach", "stop", "identical_to_source"),
        ("ese. of of of of", "stop", "wrong_script"),
        ("狗" * 200, "stop", "runaway_length"),
        ("一只狗在海滩上", "length", "runaway_length"),  # cut off by the token budget
    ],
)
def test_validation_reasons(output, finish, reason):
    validator = Validator(["Han"], ValidationSettings())
    assert validator.reason("A dog runs on the beach.", output, finish) == reason


def test_a_new_language_is_configuration_only():
    thai = Language(name="Thai", scripts=["Thai"])
    validator = Validator(thai.scripts, ValidationSettings())
    assert validator.reason("Shoes by Nike.", "รองเท้า Nike", "stop") is None
    assert validator.reason("Shoes by Nike.", "Zapatos de Nike", "stop") == "wrong_script"
    assert "Thai" in build_messages("Shoes by Nike.", thai.name)[0]["content"]


def test_token_budget_is_proportional_and_bounded():
    settings = TranslateSettings(max_tokens_per_char=1.0, min_max_tokens=32, max_max_tokens=512)
    assert settings.max_tokens("short") == 32
    assert settings.max_tokens("x" * 100) == 100
    assert settings.max_tokens("x" * 10_000) == 512
