"""Quality scores by back-translation and chrF, on a reference set written for this test.

Each English text has a correct Chinese translation and a wrong one (an object changed or dropped, a
number changed, another question), and for each Chinese text the English a faithful back-translation
gives, all written by hand here. The server is :class:`TranslatorDouble` (a test double, not a
model) answering from these tables, so what is measured is vlmix's mechanism and chrF's separation
of correct from wrong *given faithful back-translations*: not how well any model back-translates.
"""

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
from translate.settings import TranslateSettings
from translate.translator import Translator

# English source: (correct Chinese, its back-translation), (wrong Chinese, its back-translation).
REFERENCE = {
    "A red bus parked next to a tree.": (("一辆红色公交车停在树旁。", "A red bus is parked next to a tree."),
                                         ("红车停在树旁。", "A red car parks by the tree.")),
    "A bowl of fresh fruit on a wooden table.": (("木桌上有一碗新鲜水果。", "There is a bowl of fresh fruit on the wooden table."),
                                                 ("一个新鲜的水果在木桌上。", "A fresh fruit on a wooden table.")),
    "Three dogs running on the beach at sunset.": (("日落时分，三只狗在海滩上奔跑。", "At sunset, three dogs are running on the beach."),
                                                   ("日落时分，两只狗在海滩上奔跑。", "At sunset, two dogs are running on the beach.")),
    "A man holding a black umbrella in the rain.": (("一个男人在雨中撑着一把黑色的雨伞。", "A man is holding a black umbrella in the rain."),
                                                    ("一个男人在雨中。", "A man in the rain.")),
    "traffic light": (("红绿灯", "traffic light"), ("路灯", "street lamp")),
    "fire hydrant": (("消防栓", "fire hydrant"), ("消防车", "fire truck")),
    "Two children flying a kite in the park.": (("两个孩子在公园里放风筝。", "Two children are flying a kite in the park."),
                                                ("孩子们在公园里玩。", "The children are playing in the park.")),
    "The sign says the store opens at 9 am.": (("牌子上写着商店早上9点开门。", "The sign says the store opens at 9 in the morning."),
                                               ("牌子上写着商店早上10点开门。", "The sign says the store opens at 10 in the morning.")),
    "What color is the car on the left?": (("左边的汽车是什么颜色？", "What color is the car on the left?"),
                                           ("右边的汽车是什么颜色？", "What color is the car on the right?")),
    "A plate of rice with chicken and vegetables.": (("一盘米饭配鸡肉和蔬菜。", "A plate of rice with chicken and vegetables."),
                                                     ("一盘米饭。", "A plate of rice.")),
}
# Answered in Japanese: validation's script check flags it before any score is asked.
OTHER_LANGUAGE = {"A cat sleeping on a sofa.": ("ソファの上で寝ている猫です。", "It is a cat sleeping on the sofa.")}
MIN_QUALITY = 60.0
QUESTION, ANSWER = "What color is the car on the left?", "A red bus parked next to a tree."
CONVERSATION = [{"from": "human", "value": f"<image>\n{QUESTION}"}, {"from": "gpt", "value": ANSWER}]


def server(wrong: bool) -> TranslatorDouble:
    table = {}
    for source, pair in REFERENCE.items():
        chinese, back = pair[1 if wrong else 0]
        table[source], table[chinese] = chinese, back
    for source, (other, back) in OTHER_LANGUAGE.items():
        table[source], table[other] = other, back
    return TranslatorDouble(answer=table.__getitem__, model="wrong" if wrong else "right")


def translate(root, double, settings):
    storage = Storage(str(root))
    texts = [*REFERENCE, *OTHER_LANGUAGE, "A red bus parked next to a tree."]  # a repeat: asked once
    fields = ["caption"] * len(texts) + ["conversations"]
    texts.append(json.dumps(CONVERSATION))  # its two pieces are texts above: scored by theirs
    path = storage.path("translate", double.model, "_input", "00000.parquet")
    storage.write_parquet(path, pa.table({"key": [str(i) for i in range(len(texts))], "field": fields, "text": texts}))

    async def go():
        async with ChatClient([double.url], model=double.model) as client:
            translator = Translator(storage, client, {"zh": Language(name="Chinese", scripts=["Han"])}, settings)
            return await translator.translate_source(double.model, [path], ["zh"])

    report = asyncio.run(go())["zh"]
    out = pq.read_table(root / "translate" / double.model / "zh" / "part-00000.parquet").to_pylist()
    return report, out


@pytest.fixture
def doubles():
    made = {wrong: server(wrong) for wrong in (False, True)}
    yield made
    for double in made.values():
        double.close()


def test_back_translation_scores_separate_right_from_wrong_translations(tmp_path, doubles):
    # chrF alone, on all ten: the number check (on by default, test below) would flag 9 -> 10 am first.
    settings = TranslateSettings(quality={"back_translation": True, "min_quality": MIN_QUALITY},
                                 validation={"check_numbers": False})
    right, right_rows = translate(tmp_path, doubles[False], settings)
    wrong, wrong_rows = translate(tmp_path, doubles[True], settings)

    # Each distinct accepted answer was asked back once, with the back-translation prompt.
    for double in doubles.values():
        backs = [p for p in double.system_prompts if "into English" in p]
        assert len(backs) == len(REFERENCE) and sum(double.asked.values()) == 2 * len(REFERENCE) + 1
    good = {r["source_text"]: r["quality"] for r in right_rows if r["field"] == "caption"}
    bad = {r["source_text"]: r["quality"] for r in wrong_rows if r["field"] == "caption"}
    assert right_rows[0]["back_translation"] == "A red bus is parked next to a tree."
    assert good["traffic light"] == 100.0 and bad["fire hydrant"] < 40

    # The set's AUC: how often a correct translation outscores a wrong one (reported in translate/README.md).
    pairs = [(g, b) for g in (good[s] for s in REFERENCE) for b in (bad[s] for s in REFERENCE)]
    auc = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g, b in pairs) / len(pairs)
    assert auc >= 0.9, auc
    # Paired (the same source): every wrong translation scores below its correct one, though "a fresh
    # fruit" only just (80.0 against 80.0 for "a bowl of", paraphrased); a changed number or left/right
    # stays above MIN_QUALITY (chrF barely sees one changed word): the filter catches changed or dropped objects.
    assert all(bad[s] < good[s] for s in REFERENCE)
    assert min(bad["Three dogs running on the beach at sunset."], bad["What color is the car on the left?"]) > MIN_QUALITY

    # The filter: below MIN_QUALITY, text null and counted as low_quality.
    for report, rows in ((right, right_rows), (wrong, wrong_rows)):
        low = [r for r in rows if r["quality"] is not None and r["quality"] < MIN_QUALITY]
        assert all(r["text"] is None and r["error"] == "low_quality" for r in low)
        assert report.stats.flagged.get("low_quality", 0) == len(low)
        assert report.stats.scored == len(REFERENCE) + 2  # the repeat and the conversation too, not the Japanese
    assert right.stats.flagged.get("low_quality", 0) == 0 and wrong.stats.flagged["low_quality"] >= 7
    japanese = next(r for r in right_rows if r["source_text"] in OTHER_LANGUAGE)
    assert japanese["error"] == "wrong_script" and japanese["quality"] is None

    # The conversation: its pieces' scores (the same texts as captions above), weighted by their characters.
    for rows, scores in ((right_rows, good), (wrong_rows, bad)):
        chat = next(r for r in rows if r["field"] == "conversations")
        expected = (len(QUESTION) * scores[QUESTION] + len(ANSWER) * scores[ANSWER]) / (len(QUESTION) + len(ANSWER))
        assert chat["quality"] == pytest.approx(expected, abs=0.01)
        assert len(json.loads(chat["back_translation"])) == 2
    right_chat, wrong_chat = (next(r for r in rows if r["field"] == "conversations") for rows in (right_rows, wrong_rows))
    assert right_chat["error"] is None and json.loads(right_chat["text"])[1]["value"] == REFERENCE[ANSWER][0][0]
    assert wrong_chat["error"] == "low_quality" and wrong_chat["text"] is None  # the bus became a car


def test_the_number_check_flags_the_changed_digit_that_chrf_let_through(tmp_path, doubles):
    settings = TranslateSettings(quality={"back_translation": True, "min_quality": MIN_QUALITY})
    _, rows = translate(tmp_path, doubles[True], settings)
    errors = {r["source_text"]: r["error"] for r in rows if r["field"] == "caption"}
    assert errors["The sign says the store opens at 9 am."] == "number_mismatch"  # chrF gave it 80
    # Number words have no digit to check: "three" -> "two" dogs still passes both (chrF 65).
    assert errors["Three dogs running on the beach at sunset."] is None
    assert errors["What color is the car on the left?"] is None  # left -> right: neither catches it


def test_a_rerun_takes_back_translations_from_the_cache(tmp_path, doubles):
    settings = TranslateSettings(quality={"back_translation": True})
    translate(tmp_path / "a", doubles[False], settings)
    first = sum(doubles[False].asked.values())
    settings = settings.model_copy(update={"cache_root": str(tmp_path / "a" / "translate" / "_cache")})
    report, rows = translate(tmp_path / "b", doubles[False], settings)
    assert sum(doubles[False].asked.values()) == first  # nothing asked again
    assert report.stats.back_requests == 0 and report.stats.scored == len(REFERENCE) + 2
    assert all(r["quality"] is not None for r in rows if r["text"] is not None)


def test_min_quality_needs_the_score():
    with pytest.raises(ValueError, match="min_quality needs a score to filter on"):
        TranslateSettings(quality={"min_quality": 50})
