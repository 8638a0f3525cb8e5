"""VisualDialog, KVQA and ViQuAE on tiny published copies: each conversation checked against its annotation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.published import format_of, preset
from tests.tasks import finetune_inputs
from tests.tasks.test_finetune_presets import SHORT, build, pairs


def load(path: str):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def test_visual_dialog_rounds_are_resolved_from_the_files_question_and_answer_tables(tmp_path):
    published = finetune_inputs.WRITERS["visual_dialog"](tmp_path)
    samples, drops, _ = build(tmp_path, "visual_dialog", published)
    data = load(published.locations[0])["data"]
    dialog = next(d for d in data["dialogs"] if d["image_id"] == 378466)
    expected = [(data["questions"][r["question"]], data["answers"][r["answer"]]) for r in dialog["dialog"]]
    got = pairs(samples["378466"])
    assert [(q.removeprefix("<image>\n"), a) for q, a in got] == [(q + "?", a) for q, a in expected]
    assert got[0][0].startswith("<image>\n") and len(samples["378466"].images) == 1
    # Its image is a COCO val2014 one; the round whose answer index points past the table is left out.
    assert pairs(samples["42"]) == [("<image>\nwhat color is the cat?", "black and white")]
    assert "999999" not in samples
    assert drops["image_missing"] == 1 and drops["object:empty_answer"] == 1


def test_an_index_lookup_into_a_table_that_is_no_list_is_refused_naming_the_file(tmp_path):
    from pipelines.storage import Storage
    from tasks.published import spill

    path = tmp_path / "v.json"
    path.write_text(json.dumps({"data": {"dialogs": [{"dialog": [{"question": 0}]}], "questions": {"a": 1}}}))
    fmt = format_of(preset("visual_dialog").format, {"lookups": {"dialog.*.question": "data.questions"}})
    with pytest.raises(ValueError, match=r"v\.json: 'data.questions' is an object, not a list"):
        spill.partition(Storage(str(tmp_path / "out")), "vd", str(path), fmt, 10)
    with pytest.raises(ValueError, match="lookups"):
        format_of(preset("visual_dialog").format, {"reader": "jsonl"})


def test_kvqa_asks_the_training_images_questions_with_their_one_answer(tmp_path):
    published = finetune_inputs.WRITERS["kvqa"](tmp_path)
    samples, drops, _ = build(tmp_path, "kvqa", published)
    record = load(published.locations[0])["24742"]
    assert [(q.removeprefix("<image>\n"), a) for q, a in pairs(samples["24742"])] == [
        (q + SHORT, str(a)) for q, a in zip(record["Questions"], record["Answers"], strict=True)]
    assert set(samples) == {"24742"}  # 21717 is a test image of the first split
    assert drops["not_selected"] == 1 and drops["image_missing"] == 1 and drops["unreadable_record"] == 1


def test_viquae_groups_an_images_questions_and_answers_with_the_original_answer(tmp_path):
    published = finetune_inputs.WRITERS["viquae"](tmp_path)
    samples, drops, _ = build(tmp_path, "viquae", published)
    lines = [json.loads(x) for x in Path(published.locations[0]).read_text(encoding="utf-8").splitlines()]
    sample = samples["512px-Jackie_Wilson.png"]
    answered = [x for x in lines if x["image"] == "512px-Jackie_Wilson.png" and x["output"]["original_answer"]]
    assert [(q.removeprefix("<image>\n"), a) for q, a in pairs(sample)] == [
        (x["input"], x["output"]["original_answer"]) for x in answered]
    assert len(sample.images) == 1 and "512px-Missing.jpg" not in samples
    assert drops["image_missing"] == 1 and drops["object:empty_answer"] == 1
