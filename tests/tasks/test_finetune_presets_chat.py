"""Table 1b's conversation and text-only presets on tiny published copies, and the rules they share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.published import preset, preset_names
from tasks.published.finetune_rules import Dropped, chat_turns, most_frequent
from tests.tasks import finetune_inputs
from tests.tasks.test_finetune_presets import build

FINETUNE_MODULES = ("tasks.published.finetune_vqa", "tasks.published.finetune_grounding",
                    "tasks.published.finetune_chat")


def load(path: str):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["llava_150k", "sharegpt4v", "allava", "svit", "lvis_instruct4v"])
def test_llava_files_keep_every_turn_and_their_text_only_records(tmp_path, name):
    published = finetune_inputs.WRITERS[name](tmp_path)
    samples, drops, _ = build(tmp_path, name, published)
    records = {r["id"]: r for r in load(published.locations[0])}
    first = records["000000033471"]["conversations"]
    assert samples["000000033471"].conversations == [{"from": t["from"], "value": t["value"]} for t in first]
    assert len(samples["000000033471"].images) == 1
    # <image> after the question moves before it, as InternVL's loader expects.
    moved = samples["000000052846"].conversations[0]["value"]
    assert moved == "<image>\n" + records["000000052846"]["conversations"][0]["value"].replace("\n<image>", "")
    assert samples["text-only"].images == []
    assert samples["text-only"].conversations[1]["value"] == records["text-only"]["conversations"][1]["value"]
    assert drops["image_missing"] == 1 and drops["empty_conversation"] == 1  # a question nobody answered
    assert "missing-image" not in samples and "broken" not in samples


def test_sharegpt_speakers_are_mapped_and_unrepairable_conversations_counted(tmp_path):
    published = finetune_inputs.WRITERS["sharegpt"](tmp_path)
    samples, drops, _ = build(tmp_path, "sharegpt", published)
    records = {r["id"]: r for r in load(published.locations[0])}
    assert [t["value"] for t in samples["QWJhYvA_0"].conversations] == [
        t["value"] for t in records["QWJhYvA_0"]["conversations"]]
    assert samples["gpt-first_0"].conversations[0]["value"] == "What is 2+2?"  # the opening greeting left out
    assert samples["bing_1"].conversations[1] == {"from": "gpt", "value": "I am Bing."}
    assert drops == {"empty_conversation": 1, "bad_conversation": 1}
    assert all(s.images == [] for s in samples.values())


def test_openhermes_keeps_its_system_prompt_before_the_question(tmp_path):
    published = finetune_inputs.WRITERS["openhermes"](tmp_path)
    samples, drops, _ = build(tmp_path, "openhermes", published)
    system, question, answer = (t["value"] for t in load(published.locations[0])[0]["conversations"])
    first = next(s for key, s in samples.items() if key != "f6c2")  # keyed by its position: it has no id
    assert first.conversations == [{"from": "human", "value": f"{system}\n\n{question}"},
                                          {"from": "gpt", "value": answer}]
    assert samples["f6c2"].conversations[0]["value"] == "Write a haiku about rain."
    assert drops["empty_answer"] == 1


@pytest.mark.parametrize("name, language", [("alpaca_gpt4", "en"), ("coig_cqia", "zh")])
def test_instruction_records_become_one_exchange(tmp_path, name, language):
    published = finetune_inputs.WRITERS[name](tmp_path)
    samples, drops, _ = build(tmp_path, name, published, language=language)
    lines = Path(published.locations[0]).read_text(encoding="utf-8").splitlines()
    records = load(published.locations[0]) if name == "alpaca_gpt4" else [json.loads(x) for x in lines[:2]]
    with_input = next(r for r in records if r["input"])
    conversations = [s.conversations for s in samples.values()]
    assert [{"from": "human", "value": f"{with_input['instruction']}\n\n{with_input['input']}"},
            {"from": "gpt", "value": with_input["output"]}] in conversations
    assert len(samples) == 2
    assert drops == ({"empty_question": 1} if name == "alpaca_gpt4" else {"invalid_json": 1})


def test_textocr_gpt4v_and_wikipedia_answer_a_fixed_request(tmp_path):
    published = finetune_inputs.WRITERS["textocr_gpt4v"](tmp_path)
    samples, drops, _ = build(tmp_path / "t", "textocr_gpt4v", published)
    record = json.loads(Path(published.locations[0]).read_text(encoding="utf-8").splitlines()[0])
    sample = samples[record["filename"]]
    assert sample.conversations[1]["value"] == record["caption"] and len(sample.images) == 1
    assert drops["image_missing"] == 1

    import pyarrow.parquet as pq

    published = finetune_inputs.WRITERS["wikipedia"](tmp_path)
    samples, drops, _ = build(tmp_path / "w", "wikipedia", published)
    row = pq.read_table(published.locations[0]).to_pylist()[0]
    assert samples[row["id"]].conversations == [{"from": "human", "value": f"Tell me about {row['title']}."},
                                                {"from": "gpt", "value": row["text"].split("\n\n")[0]}]
    assert drops["empty_answer"] == 1


def test_every_finetune_preset_names_its_source_and_files_and_has_a_published_copy():
    import importlib

    names = []
    for module in FINETUNE_MODULES:
        names += [p.name for p in importlib.import_module(module).PRESETS]
    assert set(names) <= set(preset_names())
    for name in names:
        chosen = preset(name)
        assert chosen.about and chosen.files, name
        assert name in finetune_inputs.WRITERS or name in ("lrv_instruction_vg", "the_cauldron"), name  # the same shapes as lrv_instruction, clevr_math


@pytest.mark.parametrize("name", ["sharegpt4v", "llava_150k", "allava", "svit", "sharegpt", "wikipedia", "refcoco"])
def test_the_en_and_zh_datasets_can_be_translated(name):
    from pipelines.source import Source
    from tasks.kinds import kind_of

    source = Source(name="s", kind="published", preset=name, task="t", language="en", locations=["x"],
                    image_root="/images", translate_to=["zh"])
    assert kind_of(source).problems(source, ["t"]) == []


def test_a_record_of_an_unexpected_shape_is_unreadable_not_fatal():
    assert preset("vqav2").adapt({"image_id": "not a number", "question": "Q?"}, {"$annotations": []}) is None
    assert preset("ai2d").adapt({"imageName": "0.png", "questions": {"Q?": "not an object"}}, {}) is None
    assert preset("ocrvqa").adapt(["not", "a", "record"], {"$key": "1"}) is None


def test_rules():
    assert most_frequent(["2", "3", "3", "2"]) == "2"  # a tie goes to the answer given first
    assert most_frequent(["Yes", "yes ", "no"]) == "yes"
    turns = [{"from": "system", "value": "Be brief."}, {"from": "user", "value": "Hi"},
             {"from": "assistant", "value": "Hello."}]
    assert chat_turns(turns) == [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                                 {"from": "gpt", "value": "Hello."}]
    with pytest.raises(Dropped) as dropped:
        chat_turns([{"from": "human", "value": "Hi"}, {"from": "narrator", "value": "..."}])
    assert dropped.value.reason == "bad_conversation"
