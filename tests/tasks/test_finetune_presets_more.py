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


def test_every_preset_here_names_its_files_and_has_a_published_copy():
    from tasks.published import finetune_more

    for chosen in finetune_more.PRESETS:
        assert preset(chosen.name).about and chosen.files, chosen.name
        assert chosen.name in finetune_inputs.WRITERS, chosen.name


def test_laion_gpt4v_is_a_url_list_whose_columns_are_the_hub_cards_and_builds_description_exchanges(tmp_path):
    """The shipped config's laion_gpt4v entry, on a list shaped as laion/gpt4v-dataset's card says, then
    its raw shard (what the download stage leaves) built as the task stage does."""
    import pyarrow.parquet as pq

    from download.filters import filter_url_list
    from download.url_lists import _select_columns
    from flows.config import load_config
    from tasks import TaskSettings, build_task_samples
    from tasks.prompts import PROMPTS
    from tests.tasks.finetune_inputs_more import write_laion_gpt4v
    from tests.tasks.test_tasks_build import rows

    listed = write_laion_gpt4v(tmp_path / "data", tmp_path / "root")
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "finetune.yaml",
                         overrides=[f"paths.data={tmp_path / 'data'}", f"storage.root={tmp_path / 'root'}"])
    source = next(s for s in config.sources if s.name == "laion_gpt4v")
    table = pq.read_table(listed)
    kept, dropped = filter_url_list(table, source.columns, source.filters)
    selected = _select_columns(kept, source).to_pylist()
    assert selected == [{"url": u, "caption": c} for u, c in zip(table["link"].to_pylist()[:2],
                                                                   table["caption"].to_pylist()[:2], strict=True)]
    assert dict(dropped) == {"caption_too_short": 1}  # the row without a description
    samples = build_task_samples(source.model_copy(update={"locations": [str(listed)]}), str(tmp_path / "root"),
                                 TaskSettings()).samples
    assert samples == 2
    built = rows(tmp_path / "root", "laion_gpt4v")
    # The description answers whole, its paragraphs kept, a request for a detailed description.
    assert sorted(row["conversations"][1]["value"] for row in built) == sorted(table["caption"].to_pylist()[:2])
    assert all(row["conversations"][0]["value"].removeprefix("<image>\n") in PROMPTS["describe"]["en"]
               for row in built)
