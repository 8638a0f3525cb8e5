"""Validation's number check (translate/digits.py, ``number_mismatch``): each rule on its own, then as
the translation stage applies it to a part's rows and as a conversation keeps its own rule."""

from __future__ import annotations

import asyncio
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.languages import Language
from pipelines.storage import Storage
from tests.translate.translator_double import TranslatorDouble
from translate.client import ChatClient
from translate.digits import missing_numbers, numbers
from translate.settings import TranslateSettings, ValidationSettings
from translate.translator import Translator
from translate.validate import Validator


@pytest.mark.parametrize(("source", "translation", "missing"), [
    # A changed number is caught, however little of the sentence changed.
    ("The sign says the store opens at 9 am.", "牌子上写着商店早上10点开门。", ["9"]),
    ("3 dogs running on the beach.", "4只狗在海滩上奔跑。", ["3"]),
    ("A jersey with the number 23.", "一件印有号码32的球衣。", ["23"]),
    ("The price is 3.5 dollars.", "价格是35美元。", ["3.5"]),
    # Dropped: the number is gone.
    ("A bus with route 42 on its sign.", "一辆公交车。", ["42"]),
    # Full-width digits and separators (Chinese and Japanese) read as ASCII.
    ("3 dogs running on the beach.", "３只狗在海滩上奔跑。", []),
    ("The score was 12,000 points.", "得分是１２，０００分。", []),
    ("The score was 12,000 points.", "得分是12000分。", []),
    ("It weighs 3.5 kg.", "重３．５公斤。", []),
    ("The train leaves at 10:30.", "列車は１０：３０に出発します。", []),
    ("The train leaves at 10:30.", "列車は１０：４０に出発します。", ["30"]),
    ("It weighs 3.5 kg.", "重３．６公斤。", ["3.5"]),
    # A comma without three-digit groups separates numbers: a list, written with the ideographic comma too.
    ("Rooms 3, 5 and 7 are free.", "房间3，5和7空着。", []),
    ("Rooms 3, 5 and 7 are free.", "房间3、5和8空着。", ["7"]),
    # Whole numbers up to 99 may come back as numerals; another numeral does not count.
    ("3 dogs running on the beach.", "三只狗在海滩上奔跑。", []),
    ("2 cats on a sofa.", "两只猫在沙发上。", []),
    ("12 eggs in a box.", "盒子里有十二个鸡蛋。", []),
    ("25 people in a room.", "房间里有二十五个人。", []),
    ("3 dogs running on the beach.", "四只狗在海滩上奔跑。", ["3"]),
    ("The year 1998 on a poster.", "海报上写着一九九八年。", ["1998"]),  # numerals only up to 99
    # Leading zeros and added numbers.
    ("Opens at 09:00.", "9:00开门。", []),
    ("Two dogs.", "2只狗。", []),
    # The same number twice in the source is one number (a set): given once, it survived.
    ("3 cats and 3 dogs.", "猫和狗各3只。", []),
])
def test_numbers_of_the_source_must_survive(source, translation, missing):
    assert missing_numbers(source, translation) == missing


def test_what_counts_as_a_number():
    assert numbers("１２，０００ and 3,5 and 1,000,000.25 and ０７") == {"12000", "3", "5", "1000000.25", "7"}
    assert numbers("①号门") == {"1"}  # circled digits too (NFKC)
    assert numbers("three dogs") == set()  # number words are not numbers here: not checked


def test_the_validator_flags_a_lost_number_last_and_can_be_told_not_to():
    validator = Validator(["Han"], ValidationSettings())
    assert validator.reason("Three dogs running on the beach.", "两只狗在海滩上奔跑。") is None  # words: not caught
    assert validator.reason("3 dogs running on the beach.", "两只狗在海滩上奔跑。") == "number_mismatch"
    assert validator.reason("3 dogs running on the beach.", "３只狗在海滩上奔跑。") is None
    # Other reasons come first: an English answer is wrong_script, whatever its numbers.
    assert validator.reason("3 dogs running on the beach.", "4 dogs run on the sand.") == "wrong_script"
    off = Validator(["Han"], ValidationSettings(check_numbers=False))
    assert off.reason("3 dogs running on the beach.", "两只狗在海滩上奔跑。") is None


def test_the_stage_counts_number_mismatch_and_a_conversation_keeps_its_own_rule(tmp_path):
    answers = {
        "The store opens at 9 am.": "商店早上10点开门。",
        "It weighs 3.5 kg.": "重３．５公斤。",
        "Rooms 3, 5 and 7 are free.": "房间3，5和7空着。",
        "How many dogs are there? Answer: 3.": "有几只狗？答案：三。",  # in a conversation: number_changed
        "How many cats are there? Answer: 12.": "有几只猫？答案：１２。",  # full-width digits: the same number
    }
    double = TranslatorDouble(answer=answers.__getitem__)
    storage = Storage(str(tmp_path))
    texts = list(answers)[:3]
    conversations = [json.dumps([{"from": "human", "value": f"<image>\n{question}"}]) for question in list(answers)[3:]]
    path = storage.path("translate", "src", "_input", "00000.parquet")
    storage.write_parquet(path, pa.table({"key": ["a", "b", "c", "d", "e"],
                                          "field": ["caption"] * 3 + ["conversations"] * 2,
                                          "text": [*texts, *conversations]}))

    async def go():
        async with ChatClient([double.url], model=double.model) as client:
            translator = Translator(storage, client, {"zh": Language(name="Chinese", scripts=["Han"])},
                                    TranslateSettings())
            return await translator.translate_source("src", [path], ["zh"])

    try:
        report = asyncio.run(go())["zh"]
    finally:
        double.close()
    rows = pq.read_table(tmp_path / "translate" / "src" / "zh" / "part-00000.parquet").to_pylist()
    assert [r["error"] for r in rows] == ["number_mismatch", None, None, "number_changed", None]
    assert rows[0]["text"] is None and rows[1]["text"] == "重３．５公斤。"
    assert report.stats.flagged == {"number_mismatch": 1, "number_changed": 1}
