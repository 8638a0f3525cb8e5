"""Whole conversations through the translation stage: translated whole or flagged whole, never half.

The model is :class:`TranslatorDouble`, a test double on loopback that speaks the OpenAI chat API and
answers word for word (each English word -> 词), or wrongly on purpose: what is under test is vlmix's
own cutting, protecting, restoring, caching and judging, which a real model cannot be made to
exercise on demand. The real vLLM path is the same client (tests/translate/test_stage_vllm.py).
"""

from __future__ import annotations

import asyncio
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.languages import Language
from pipelines.storage import Storage
from tests.translate.translator_double import TranslatorDouble, word_for_word
from translate.client import ChatClient
from translate.prompt import build_messages
from translate.segment import join_turn, plan_turn
from translate.settings import ConversationSettings, TranslateSettings
from translate.translator import Translator

LANGUAGES = {"zh": Language(name="Chinese", scripts=["Han"])}
SETTINGS = TranslateSettings(retry_backoff_s=0.05, max_backoff_s=0.2)
CODE = "```python\nprint(count_cars(image))  # 2 cars\n```"
CHAT = [
    {"from": "human", "value": "<image>\nWhat is <ref>the red car</ref><box>[[10, 20, 300, 400]]</box> doing?"},
    {"from": "gpt", "value": "It waits at 3 lights, see https://example.com/cars."},
    {"from": "human", "value": "Write code for it."},
    {"from": "gpt", "value": f"Use `count_cars` like this:\n{CODE}\nThe formula is $n^2 + 1$ and\n$$\\sum_i x_i$$"},
    {"from": "human", "value": "And the steps?"},
    {"from": "gpt", "value": "Steps:\n1. Open the door.\n2. Close the door."},
]
# CHAT as word_for_word translates it, worked out by hand.
CHAT_ZH = [
    {"from": "human", "value": "<image>\n词 词 <ref>词 词 词</ref><box>[[10, 20, 300, 400]]</box> 词?"},
    {"from": "gpt", "value": "词 词 词 3 词, 词 https://example.com/cars."},
    {"from": "human", "value": "词 词 词 词."},
    {"from": "gpt", "value": f"词 `count_cars` 词 词:\n{CODE}\n词 词 词 $n^2 + 1$ 词\n$$\\sum_i x_i$$"},
    {"from": "human", "value": "词 词 词?"},
    {"from": "gpt", "value": "词:\n1. 词 词 词.\n2. 词 词 词."},
]
OTHER = [{"from": "human", "value": "Describe the picture."}, {"from": "gpt", "value": "A cat sleeps on 2 pillows."}]


@pytest.fixture
def double():
    doubles = []

    def make(answer=word_for_word):
        doubles.append(TranslatorDouble(answer))
        return doubles[-1]

    yield make
    for d in doubles:
        d.close()


def write_part(storage: Storage, name: str, samples: dict[str, list[dict]], captions: dict[str, str] | None = None):
    """A long input part: one ``conversations`` row per sample (JSON), and caption rows."""
    rows = [(key, "conversations", json.dumps(turns)) for key, turns in samples.items()]
    rows += [(key, "caption", text) for key, text in (captions or {}).items()]
    table = pa.table({"key": [r[0] for r in rows], "field": [r[1] for r in rows], "text": [r[2] for r in rows]})
    path = storage.path("translate", "chat", "_input", f"{name}.parquet")
    storage.write_parquet(path, table)
    return path


def translate(storage: Storage, url: str, paths: list[str], settings=SETTINGS, model="double-model"):
    async def go():
        async with ChatClient([url], model=model, retry_backoff_s=0.05, max_backoff_s=0.2) as client:
            translator = Translator(storage, client, LANGUAGES, settings)
            return await translator.translate_source("chat", paths, ["zh"])

    return asyncio.run(go())["zh"]


def output(storage: Storage, part: str) -> dict[str, dict]:
    path = storage.path("translate", "chat", "zh", f"part-{part}.parquet")
    return {row["key"]: row for row in pq.read_table(path, filesystem=storage.fs).to_pylist()}


def test_a_conversation_is_translated_whole_with_code_latex_urls_markup_and_numbers_kept(tmp_path, double):
    model = double()
    storage = Storage(str(tmp_path))
    path = write_part(storage, "00000", {"chat": CHAT}, captions={"cap": "A dog."})
    report = translate(storage, model.url, [path])

    rows = output(storage, "00000")
    assert rows["chat"]["error"] is None and rows["chat"]["field"] == "conversations"
    assert json.loads(rows["chat"]["text"]) == CHAT_ZH
    assert json.loads(rows["chat"]["source_text"]) == CHAT
    # No code, formula, image tag or box coordinate was ever sent; every request is the Figure-5 prompt.
    sent = "\n".join(model.asked)
    for kept in (CODE, "$n^2 + 1$", "\\sum_i", "<image>", "[[10, 20, 300, 400]]", "https://example.com", "`count_cars`"):
        assert kept not in sent
    assert set(model.system_prompts) == {build_messages("x", "Chinese")[0]["content"]}
    assert "What is {{1}}the red car{{2}} doing?" in model.asked  # the sentence whole, markup as placeholders
    # The caption path is the one it was: the text as the request, the answer as the row's text.
    assert rows["cap"]["text"] == "词 词." and rows["cap"]["field"] == "caption" and model.asked["A dog."] == 1
    assert report.stats.rows == 2 and report.stats.translated == 2


def _fault(trigger: str, change):
    def answer(text: str) -> str:
        honest = word_for_word(text)
        return change(honest) if trigger in text else honest

    return answer


FAULTS = {
    "an answer lost (the turn with it)": (_fault("Write code", lambda a: ""), "empty_output"),
    "a code block broken": (_fault("like this", lambda a: a + "```"), "markup_changed"),
    "a number changed": (_fault("waits at 3", lambda a: a.replace("3", "三")), "number_changed"),
    "a placeholder lost": (_fault("What is", lambda a: a.replace("{{2}}", "")), "placeholder_changed"),
    "<ref> after </ref>": (_fault("What is", lambda a: "{{2}}词{{1}} 词?"), "placeholder_changed"),
    "a list item merged": (_fault("Steps", lambda a: a.replace("\n", " ")), "structure_changed"),
    "a refusal": (_fault("Write code", lambda a: "I'm sorry, I cannot help."), "refusal"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_one_bad_answer_flags_the_whole_conversation(tmp_path, double, fault):
    answer, reason = FAULTS[fault]
    model = double(answer)
    storage = Storage(str(tmp_path))
    path = write_part(storage, "00000", {"chat": CHAT, "other": OTHER})
    report = translate(storage, model.url, [path])

    rows = output(storage, "00000")
    assert rows["chat"]["text"] is None and rows["chat"]["error"] == reason
    raw = json.loads(rows["chat"]["raw_output"])  # every piece's answer kept for inspection
    assert len(raw) == sum(len(plan_turn(t["value"], 1500)[1]) for t in CHAT)
    assert rows["other"]["error"] is None  # the other sample of the part is not touched
    assert json.loads(rows["other"]["text"]) == [
        {"from": "human", "value": "词 词 词."}, {"from": "gpt", "value": "词 词 词 词 2 词."}]
    assert report.stats.flagged == {reason: 1} and report.stats.translated == 1


def test_a_long_turn_is_cut_at_paragraphs_and_sentences_and_joined_back(tmp_path, double):
    model = double()
    storage = Storage(str(tmp_path))
    paragraphs = [" ".join(f"Sentence {4 * p + s} talks about item {s}, e.g. a thing." for s in range(4))
                  for p in range(3)]
    long = "\n\n".join(paragraphs)  # 3 paragraphs of about 190 characters
    turns = [{"from": "human", "value": "Tell me everything."}, {"from": "gpt", "value": long}]
    path = write_part(storage, "00000", {"long": turns})
    settings = SETTINGS.model_copy(update={"conversations": ConversationSettings(max_piece_chars=120)})
    translate(storage, model.url, [path], settings)

    asked = [text for text in model.asked if text != "Tell me everything."]
    assert len(asked) == 6 and all(len(text) <= 120 for text in asked)  # two sentences a request
    assert all("\n" not in text and text.endswith("thing.") for text in asked)  # never inside a sentence
    value = json.loads(output(storage, "00000")["long"]["text"])[1]["value"]
    assert value.count("\n\n") == 2 and not re.search("[A-Za-z]", value)
    assert [int(n) for n in re.findall(r"Sentence (\d+)", long)] == [int(n) for n in re.findall(r"词 (\d+) 词", value)]


def test_a_turn_is_cut_to_what_the_models_context_holds(tmp_path, double):
    model = double()
    model.max_model_len = 512  # as vLLM's /v1/models reports it
    storage = Storage(str(tmp_path))
    long = " ".join(f"Sentence {n} talks about item {n}." for n in range(40))  # one paragraph, 1,299 characters
    path = write_part(storage, "00000", {"long": [{"from": "human", "value": "Tell me."}, {"from": "gpt", "value": long}]})
    translate(storage, model.url, [path], model=None)  # the model's name and context come from the endpoint

    limit = SETTINGS.piece_chars(512)
    asked = [text for text in model.asked if text != "Tell me."]
    assert limit < 200 and all(len(text) <= limit and text.endswith(".") for text in asked)
    assert len(asked) >= len(long) / limit
    value = json.loads(output(storage, "00000")["long"]["text"])[1]["value"]
    assert [int(n) for n in re.findall(r"词 (\d+) 词", value)] == list(range(40))


def test_pieces_are_asked_once_per_run_and_then_come_from_the_cache(tmp_path, double):
    model = double()
    storage = Storage(str(tmp_path))
    question = {"from": "human", "value": "What is in the image?"}
    first = write_part(storage, "00000", {
        "a": [question, {"from": "gpt", "value": "A dog on 2 chairs."}],
        "b": [question, {"from": "gpt", "value": "A bird on 1 branch."}],
    })
    stats = translate(storage, model.url, [first]).stats
    assert model.asked["What is in the image?"] == 1  # two samples, one request
    assert stats.requests == 3 and stats.texts == 4 and stats.deduplicated == 1

    second = write_part(storage, "00001", {
        "c": [question, {"from": "gpt", "value": "A bird on 1 branch."}],  # every piece asked before
        "d": [question, {"from": "gpt", "value": "A cow in 3 fields."}],  # one new piece
    })
    translate(storage, model.url, [second])  # a new run: only the cache remembers
    stats = storage.read_json(storage.path("translate", "chat", "zh", "part-00001.stats.json"))
    assert stats["from_cache"] == 2 and stats["requests"] == 1 and sum(model.asked.values()) == 4
    rows = output(storage, "00001")
    assert rows["c"]["origin"] == "cache" and rows["d"]["origin"] == "request"
    assert json.loads(rows["c"]["text"]) == json.loads(output(storage, "00000")["b"]["text"])


def test_the_task_tables_conversations_column_is_read_as_one_row_per_sample(tmp_path, double):
    model = double()
    storage = Storage(str(tmp_path))
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    table = pa.table({"id": ["s-a", "s-b"], "key": ["a", "b"], "conversations": [CHAT, OTHER]},
                     schema=pa.schema([("id", pa.string()), ("key", pa.string()),
                                       ("conversations", pa.list_(turn))]))
    path = storage.path("translate", "chat", "_input", "00000.parquet")
    storage.write_parquet(path, table)
    translate(storage, model.url, [path])

    rows = output(storage, "00000")
    assert sorted(rows) == ["a", "b"] and json.loads(rows["a"]["text"]) == CHAT_ZH


def test_plan_and_join_give_the_turn_back_and_keep_blocks_out_of_requests():
    turn = (f"<image>\nSee <quad>(1,2),(3,4)</quad> and {{{{name}}}} at www.example.org.\n\n{CODE}\n"
            "Then \\(a+b\\) costs $5 and $10 <b>bold</b>.\n\\begin{align}x&=1\\end{align}")
    skeleton, pieces = plan_turn(turn, max_chars=1500)
    assert join_turn(skeleton, [_unmasked(p) for p in pieces]) == turn
    assert [p.text for p in pieces] == ["See {{1}} and {{2}} at {{3}}.", "Then {{1}} costs $5 and $10 {{2}}bold{{3}}."]
    assert pieces[1].spans == ("\\(a+b\\)", "<b>", "</b>")
    assert join_turn(*plan_turn("2024 -- 3.5%", 1500)) == "2024 -- 3.5%"  # nothing to translate: kept


def _unmasked(piece) -> str:
    return re.sub(r"\{\{(\d+)\}\}", lambda m: piece.spans[int(m.group(1)) - 1], piece.text)


@pytest.mark.parametrize("text, reason", [("not json", "bad_conversation"), ('[{"from": "human"}]', "bad_conversation"),
                                          (json.dumps([{"from": "gpt", "value": "```x```"}]), "empty_source")])
def test_a_conversation_row_that_cannot_be_translated_says_why(tmp_path, double, text, reason):
    model = double()
    storage = Storage(str(tmp_path))
    path = storage.path("translate", "chat", "_input", "00000.parquet")
    storage.write_parquet(path, pa.table({"key": ["k"], "field": ["conversations"], "text": [text]}))
    translate(storage, model.url, [path])
    assert output(storage, "00000")["k"]["error"] == reason and not model.asked


HONEST = {  # answers a real model gives that differ in form from word_for_word, and are right
    "a URL against Chinese punctuation": ("It waits at 3 lights, see {{1}}.", "它在3个红绿灯处等候，见{{1}}。",
                                          "它在3个红绿灯处等候，见https://example.com/cars。"),
    "placeholders spaced, full-width": ("It waits at 3 lights, see {{1}}.", "它在3个红绿灯处等候，见｛｛ 1 ｝｝。",
                                        "它在3个红绿灯处等候，见https://example.com/cars。"),
}


@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_answers_in_another_form_are_accepted(tmp_path, double, case):
    asked, answer, expected = HONEST[case]
    model = double(lambda text: answer if text == asked else word_for_word(text))
    storage = Storage(str(tmp_path))
    translate(storage, model.url, [write_part(storage, "00000", {"chat": CHAT})])
    row = output(storage, "00000")["chat"]
    assert row["error"] is None and json.loads(row["text"])[1]["value"] == expected


def test_grounded_phrases_may_move_where_chinese_puts_them(tmp_path, double):
    turn = "The <ref>red car</ref><box>[[1, 2, 3, 4]]</box> is next to <ref>a tree</ref><box>[[5, 6, 7, 8]]</box>."
    asked = "The {{1}}red car{{2}} is next to {{3}}a tree{{4}}."
    model = double(lambda text: "{{3}}一棵树{{4}}旁边是{{1}}红色的车{{2}}。" if text == asked else word_for_word(text))
    storage = Storage(str(tmp_path))
    translate(storage, model.url, [write_part(storage, "00000", {"g": [{"from": "human", "value": "Where?"},
                                                                         {"from": "gpt", "value": turn}]})])
    row = output(storage, "00000")["g"]
    assert row["error"] is None and json.loads(row["text"])[1]["value"] == (
        "<ref>一棵树</ref><box>[[5, 6, 7, 8]]</box>旁边是<ref>红色的车</ref><box>[[1, 2, 3, 4]]</box>。")
