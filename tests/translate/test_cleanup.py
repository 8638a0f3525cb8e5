"""Answer clean-up: each rule, and its count in a part's stats (against :class:`TranslatorDouble`, a
test double of an OpenAI-compatible server on loopback)."""

from __future__ import annotations

import asyncio
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.languages import Language
from pipelines.storage import Storage
from tests.translate.translator_double import TranslatorDouble, word_for_word
from translate.cleanup import clean
from translate.client import ChatClient
from translate.settings import TranslateSettings
from translate.translator import Translator


@pytest.mark.parametrize("source, answer, expected, kinds", [
    ("A dog.", "\u201c一只狗。\u201d", "一只狗。", ["wrapper"]),
    ("A dog.", '"一只狗。"', "一只狗。", ["wrapper"]),
    ("A dog.", "「一只狗」", "一只狗", ["wrapper"]),
    ("A dog.", "（一只狗）", "一只狗", ["wrapper"]),
    ("A dog.", "Translation: 一只狗。", "一只狗。", ["label"]),
    ("A dog.", "Chinese translation: 一只狗。", "一只狗。", ["label"]),
    ("A dog.", "译文：「一只狗」", "一只狗", ["label", "wrapper"]),
    # what the source has itself, or what is not one wrapper, stays
    ('"A dog."', '"一只狗。"', '"一只狗。"', []),
    ("(A dog.)", "（一只狗。）", "（一只狗。）", []),
    ("Translation: a word.", "翻译：一个词。", "翻译：一个词。", []),
    ("A dog and a cat.", '"狗"和"猫"', '"狗"和"猫"', []),
    ("A dog (small).", "一只狗（小）", "一只狗（小）", []),
    ("Dream of the Red Chamber", "《红楼梦》", "《红楼梦》", []),  # a title's marks are the translation's own
    ("A dog.", "Translation:", "Translation:", []),  # nothing after the label: left for validation
])
def test_each_rule(source, answer, expected, kinds):
    assert clean(source, answer) == (expected, kinds)


def test_cleaned_answers_are_counted_and_kept_raw(tmp_path):
    def wrapping(text: str) -> str:
        return {"A dog.": "Translation: \u201c词 词.\u201d", "A cat.": '"词 词."'}.get(text, word_for_word(text))

    server = TranslatorDouble(wrapping)
    try:
        storage = Storage(str(tmp_path))
        path = storage.path("translate", "coyo", "_input", "00000.parquet")
        chat = [{"from": "human", "value": "A cat."}, {"from": "gpt", "value": "A bird."}]
        storage.write_parquet(path, pa.table({"key": ["a", "b", "c"], "field": ["caption", "caption", "conversations"],
                                              "text": ["A dog.", "A cat.", json.dumps(chat)]}))

        async def go():
            async with ChatClient([server.url]) as client:
                translator = Translator(storage, client, {"zh": Language(name="Chinese", scripts=["Han"])},
                                        TranslateSettings())
                return await translator.translate_source("coyo", [path], ["zh"])

        stats = asyncio.run(go())["zh"].stats
    finally:
        server.close()
    rows = {r["key"]: r for r in pq.read_table(storage.path("translate", "coyo", "zh", "part-00000.parquet")).to_pylist()}
    assert rows["a"]["text"] == "词 词." and rows["a"]["raw_output"] == "Translation: \u201c词 词.\u201d"
    assert rows["b"]["text"] == "词 词."
    assert json.loads(rows["c"]["text"])[0]["value"] == "词 词."  # a conversation's piece, cleaned alike
    # "A cat." is asked once and cleaned for each of the two rows that use it
    assert stats.cleaned == {"label": 1, "wrapper": 3} and stats.translated == 3
