"""Conversation sources with ``translate_to``: translated whole into the translated dataset, or counted out whole.

The translation stage runs for real, in-process (:mod:`tests.tasks.conversation_translation`); its model is
a test double answering word for word (each English word -> 词, everything else kept), so every
translated turn below is worked out by hand.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.config import Source
from pipelines.layout.task_table import DROPS_KEY
from tasks import TaskSettings, build_task_samples
from tasks.stage import TaskStageContext, TranslationInputs
from tests.tasks import finetune_inputs
from tests.tasks.conversation_translation import translate_source
from tests.tasks.test_tasks_conversations import image_bytes, rows, write_jsonl
from tests.translate.translator_double import word_for_word

CODE = "```python\ndef add(a, b):\n    return a + b\n\nprint(add(3, 4))  # 7\n```"
CHAT = [
    {"from": "human", "value": "<image>\nWrite a function that adds 2 numbers, then show it for 3 and 4."},
    {"from": "gpt", "value": f"Here is the code:\n{CODE}\nIt prints 7."},
    {"from": "human", "value": "And in `bash`?"},
    {"from": "gpt", "value": "Use `expr 3 + 4`, which prints 7."},
]
CHAT_ZH = [  # CHAT as the double translates it, by hand
    {"from": "human", "value": "<image>\n词 词 词 词 词 2 词, 词 词 词 词 3 词 4."},
    {"from": "gpt", "value": f"词 词 词 词:\n{CODE}\n词 词 7."},
    {"from": "human", "value": "词 词 `bash`?"},
    {"from": "gpt", "value": "词 `expr 3 + 4`, 词 词 7."},
]
LOST_TURN = [{"from": "human", "value": "<image>\nWhat is on the table?"}, {"from": "gpt", "value": "A red cup."},
             {"from": "human", "value": "Tell me more."}, {"from": "gpt", "value": "It holds hot tea."}]
NUMBER = [{"from": "human", "value": "<image>\nHow many apples?"}, {"from": "gpt", "value": "There are 5 apples."}]


def chat_source(tmp_path: Path, records: list[dict]) -> Source:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    (images / "a.jpg").write_bytes(image_bytes("JPEG"))
    return Source(name="chat", kind="internvl_jsonl", task="conversation", language="en", translate_to=["zh"],
                  locations=[str(write_jsonl(tmp_path, records))], image_root=str(images))


def by_key(root: Path, dataset: str) -> dict[str, dict]:
    return {row["key"]: row for row in rows(root, dataset)}


def test_a_conversation_with_code_and_numbers_becomes_a_translated_sample_and_a_lost_turn_flags_it_whole(tmp_path):
    source = chat_source(tmp_path, [
        {"id": "code", "image": "a.jpg", "conversations": CHAT},
        {"id": "lost", "image": "a.jpg", "conversations": LOST_TURN},
        {"id": "number", "image": "a.jpg", "conversations": NUMBER},
    ])

    def answer(text: str) -> str:
        if text == "It holds hot tea.":
            return ""  # the model loses the last turn
        if text == "There are 5 apples.":
            return "词 词 6 词."  # and changes a number
        return word_for_word(text)

    asked = translate_source(tmp_path, source, answer)
    assert not any("```" in text or "<image>" in text or "expr 3 + 4" in text for text in asked)  # never sent
    result = build_task_samples(source, str(tmp_path), TaskSettings())

    english, chinese = by_key(tmp_path, "chat"), by_key(tmp_path, "chat-zh")
    assert sorted(english) == ["code", "lost", "number"]
    assert sorted(chinese) == ["code"]  # nothing half-translated
    assert chinese["code"]["conversations"] == CHAT_ZH  # same turns, speakers, image, code and numbers
    assert CODE in chinese["code"]["conversations"][1]["value"]
    assert (chinese["code"]["language"], chinese["code"]["original_language"]) == ("zh", "en")
    assert chinese["code"]["images"] == english["code"]["images"]
    assert result.drops == {"invalid_json": 1, "translation_flagged:empty_output": 1,
                            "translation_flagged:number_changed": 1}
    (table,) = (tmp_path / "tasks" / "chat-zh").glob("*.parquet")  # the drops travel with the translated table
    assert json.loads(pq.read_schema(table).metadata[DROPS_KEY]) == result.drops


def _stage_output(root: Path, source: Source, conversations: dict[str, list[dict]]) -> None:
    """The translation stage's part for each unit, as another producer wrote it: one row per sample."""
    ctx = TaskStageContext(str(root), {}, TaskSettings())
    for unit in TranslationInputs([source]).units(ctx):
        folder = root / "translate" / source.name / "zh"
        folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(conversations)
        pq.write_table(pa.table({
            "key": keys, "target_language": ["zh"] * len(keys), "field": ["conversations"] * len(keys),
            "text": [json.dumps(conversations[k], ensure_ascii=False) for k in keys], "error": [None] * len(keys),
        }), folder / f"part-{unit.name}.parquet")


def test_a_translation_that_comes_back_with_a_turn_lost_or_an_image_moved_is_counted_out(tmp_path):
    source = chat_source(tmp_path, [
        {"id": "good", "image": "a.jpg", "conversations": NUMBER},
        {"id": "short", "image": "a.jpg", "conversations": LOST_TURN},
        {"id": "moved", "image": "a.jpg", "conversations": NUMBER},
        {"id": "swapped", "image": "a.jpg", "conversations": NUMBER},
    ])
    good = [{"from": "human", "value": "<image>\n有几个苹果？"}, {"from": "gpt", "value": "有5个苹果。"}]
    _stage_output(tmp_path, source, {
        "good": good,
        "short": [{"from": "human", "value": "<image>\n桌上有什么？"}, {"from": "gpt", "value": "一个红杯子。"},
                  {"from": "human", "value": "多说一点。"}],
        "moved": [{"from": "human", "value": "有几个苹果？"}, {"from": "gpt", "value": "<image>\n有5个苹果。"}],
        "swapped": [{"from": "gpt", "value": "<image>\n有几个苹果？"}, {"from": "human", "value": "有5个苹果。"}],
    })
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert sorted(by_key(tmp_path, "chat-zh")) == ["good"]
    assert by_key(tmp_path, "chat-zh")["good"]["conversations"] == good
    assert result.drops == {"invalid_json": 1, "translation_turns_changed": 2, "translation_markup_changed": 1}


@pytest.mark.parametrize("preset", ["llava_150k", "sharegpt"])
def test_published_conversation_presets_are_translated_whole(tmp_path, preset):
    published = finetune_inputs.WRITERS[preset](tmp_path)
    source = Source(name=preset.replace("_", "-"), kind="published", preset=preset, task="conversation",
                    language="en", translate_to=["zh"], locations=published.locations,
                    image_root=str(published.image_root) if published.image_root else None)
    asked = translate_source(tmp_path, source)
    assert not any("<image>" in text or "```" in text for text in asked)
    build_task_samples(source, str(tmp_path), TaskSettings())
    english, chinese = by_key(tmp_path, source.name), by_key(tmp_path, f"{source.name}-zh")
    assert chinese and sorted(chinese) == sorted(english)  # the double's answers all pass: every sample
    for key, sample in chinese.items():
        original = english[key]["conversations"]
        assert [t["from"] for t in sample["conversations"]] == [t["from"] for t in original]
        for before, after in zip(original, sample["conversations"], strict=True):
            assert after["value"].count("<image>") == before["value"].count("<image>")
            assert [line for line in before["value"].split("\n") if line.startswith("```")] == [
                line for line in after["value"].split("\n") if line.startswith("```")]
    if preset == "llava_150k":
        assert chinese["text-only"]["conversations"][1]["value"] == "```python\nprint(1)\n```"  # code kept whole
        assert chinese["000000052846"]["conversations"][1]["value"] == "词 词 词 词 词 词; 词 词 词 10:30."


def test_translations_cut_into_pieces_by_an_earlier_vlmix_fail_the_build_naming_the_part(tmp_path):
    source = chat_source(tmp_path, [{"id": "good", "image": "a.jpg", "conversations": NUMBER}])
    ctx = TaskStageContext(str(tmp_path), {}, TaskSettings())
    (unit,) = TranslationInputs([source]).units(ctx)
    part = tmp_path / "translate" / "chat" / "zh" / f"part-{unit.name}.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table({"key": ["good", "good"], "target_language": ["zh", "zh"],
                             "field": ["turns.0.0", "turns.1.0"], "text": ["有几个苹果？", "有5个苹果。"],
                             "error": [None, None]}), part)
    with pytest.raises(ValueError, match=rf"{part}: rows of field turns.* remove {tmp_path / 'translate' / 'chat'}"):
        build_task_samples(source, str(tmp_path), TaskSettings())
    assert not (tmp_path / "tasks" / "chat-zh").exists()  # nothing half-done written


def test_webdataset_conversations_are_translated_whole(tmp_path):
    shard = tmp_path / "chat-000000.tar"
    members = {"s0.jpg": image_bytes("JPEG"), "s0.json": json.dumps({"conversations": CHAT}).encode()}
    with tarfile.open(shard, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    source = Source(name="chat", kind="webdataset", task="conversation", language="en", translate_to=["zh"],
                    locations=[str(tmp_path / "chat-{000000..000000}.tar")])
    translate_source(tmp_path, source)
    result = build_task_samples(source, str(tmp_path), TaskSettings())
    assert by_key(tmp_path, "chat-zh")["s0"]["conversations"] == CHAT_ZH and result.drops == {}
